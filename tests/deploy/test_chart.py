"""Unit tests over the YAML the Cascade chart renders (helm template, real helm):
what each component must have, how the objects reference each other, and the
hardening/scaling/canary behaviour each value set promises."""

import pytest

GRPC = {
    "router": (50051, 9101),
    "retrieval": (50052, 9102),
    "features": (50053, 9103),
    "ranking": (50054, 9104),
}
ALL = [*GRPC, "gateway", "stream", "triton"]
COMPONENT = "app.kubernetes.io/component"


def by_kind(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def workloads(objs):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] in ("Deployment", "Rollout")}


def pod_spec(w):
    return w["spec"]["template"]["spec"]


def container(w):
    return pod_spec(w)["containers"][0]


def env_of(w):
    return {e["name"]: e for e in container(w).get("env", [])}


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("name", ALL)
def test_every_component_has_workload_service_autoscaler_pdb_monitor(render, name):
    objs = render()
    full = f"cascade-{name}"
    assert by_kind(objs, "Deployment").get(full), f"no Deployment {full}"
    assert by_kind(objs, "Service").get(full), f"no Service {full}"
    autoscaler = by_kind(objs, "ScaledObject" if name == "stream" else "HorizontalPodAutoscaler")
    assert full in autoscaler, f"no autoscaler for {full}"
    assert full in by_kind(objs, "PodDisruptionBudget")
    assert full in by_kind(objs, "ServiceMonitor")
    assert full in by_kind(objs, "NetworkPolicy")


@pytest.mark.parametrize("value_set", ["default", "rollouts", "gpu"])
def test_references_resolve(render, value_set):
    """PDB/Service/ServiceMonitor selectors match the pods; autoscalers target existing workloads."""
    objs = render(value_set)
    wl = workloads(objs)
    pod_labels = {n: w["spec"]["template"]["metadata"]["labels"] for n, w in wl.items()}
    for name, pdb in by_kind(objs, "PodDisruptionBudget").items():
        assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels[name]), name
        assert [
            n for n, lab in pod_labels.items() if selects(pdb["spec"]["selector"]["matchLabels"], lab)
        ] == [name]
    services = by_kind(objs, "Service")
    for name, svc in services.items():
        assert any(selects(svc["spec"]["selector"], lab) for lab in pod_labels.values()), name
    for name, sm in by_kind(objs, "ServiceMonitor").items():
        svc = services[name]
        assert selects(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
        ports = {p["name"] for p in svc["spec"]["ports"]}
        assert {e["port"] for e in sm["spec"]["endpoints"]} <= ports, name
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for name, a in by_kind(objs, kind).items():
            ref = a["spec"]["scaleTargetRef"]
            assert ref["name"] in wl and wl[ref["name"]]["kind"] == ref["kind"], (name, ref)


@pytest.mark.parametrize("name", GRPC)
def test_grpc_ports_probes_and_headless_service(render, name):
    objs = render()
    port, metrics = GRPC[name]
    w = by_kind(objs, "Deployment")[f"cascade-{name}"]
    c = container(w)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": port, "metrics": metrics}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["grpc"] == {"port": port}, probe
    headless = by_kind(objs, "Service")[f"cascade-{name}-headless"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["ports"][0]["port"] == port
    env = env_of(w)
    assert env["CASCADE_PORT"]["value"] == str(port) and env["CASCADE_METRICS_PORT"]["value"] == str(metrics)


def test_router_targets_use_headless_dns_round_robin(render):
    objs = render()
    env = env_of(by_kind(objs, "Deployment")["cascade-router"])
    assert env["CASCADE_RETRIEVAL_TARGET"]["value"] == "dns:///cascade-retrieval-headless:50052"
    assert env["CASCADE_FEATURES_TARGET"]["value"] == "dns:///cascade-features-headless:50053"
    assert env["CASCADE_RANKING_TARGET"]["value"] == "dns:///cascade-ranking-headless:50054"
    gw = env_of(by_kind(objs, "Deployment")["cascade-gateway"])
    assert gw["CASCADE_ROUTER_TARGET"]["value"] == "dns:///cascade-router-headless:50051"
    cfg = by_kind(objs, "ConfigMap")["cascade-config"]["data"]
    assert int(cfg["CASCADE_GRPC_MAX_CONNECTION_AGE_S"]) > 0
    assert cfg["CASCADE_HOST"] == "0.0.0.0"


def test_non_grpc_probes_and_metrics_ports(render):
    objs = render()
    deps = by_kind(objs, "Deployment")
    stream = container(deps["cascade-stream"])
    assert [p["containerPort"] for p in stream["ports"]] == [9105]
    assert stream["livenessProbe"]["httpGet"]["port"] == "metrics"
    gateway = container(deps["cascade-gateway"])
    assert [p["containerPort"] for p in gateway["ports"]] == [8080]
    assert by_kind(objs, "ServiceMonitor")["cascade-gateway"]["spec"]["endpoints"][0]["port"] == "http"
    triton = container(deps["cascade-triton"])
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["image"].startswith("nvcr.io/nvidia/tritonserver:") and triton["image"].endswith("-py3")


@pytest.mark.parametrize("value_set", ["default", "rollouts", "gpu", "minimal"])
def test_security_context_and_resources(render, value_set):
    for name, w in workloads(render(value_set)).items():
        spec = pod_spec(w)
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False
        assert spec["topologySpreadConstraints"], name
        tmp_vol = {v["name"]: v for v in spec["volumes"]}["tmp"]
        assert "emptyDir" in tmp_vol
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, (
                name,
                c["name"],
            )
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, (name, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), (name, c["name"])
            assert "memory" in c["resources"]["limits"], (name, c["name"])


def test_hpa_targets(render):
    objs = render()
    hpas = by_kind(objs, "HorizontalPodAutoscaler")
    assert all(h["apiVersion"] == "autoscaling/v2" for h in hpas.values())
    for name in GRPC:
        metrics = hpas[f"cascade-{name}"]["spec"]["metrics"]
        assert {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        } in metrics
        pods = [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"]
        assert pods == ["cascade_grpc_inflight_requests"], name
    triton = hpas["cascade-triton"]["spec"]
    assert [m["pods"]["metric"]["name"] for m in triton["metrics"]] == [
        "nv_inference_queue_duration_us_per_request"
    ]
    for h in hpas.values():
        assert 1 <= h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"]


def test_stream_worker_scales_on_kafka_lag_capped_by_partitions(render, repo):
    import yaml

    so = by_kind(render(), "ScaledObject")["cascade-stream"]["spec"]
    lag = {
        t["metadata"]["consumerGroup"]: t["metadata"]["topic"] for t in so["triggers"] if t["type"] == "kafka"
    }
    assert lag == {"cascade-stream.users": "user-events", "cascade-stream.items": "user-events.by-item"}
    values = yaml.safe_load((repo / "charts/cascade/values.yaml").read_text())
    partitions = values["components"]["stream"]["kafka"]["partitions"]
    assert so["maxReplicaCount"] <= partitions
    # ... and the chart's partition count is the real topics' (k8s/ Strimzi KafkaTopics).
    topics = yaml.safe_load_all((repo / "k8s/components/strimzi-kafka/topics.yaml").read_text())
    by_name = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in topics}
    assert by_name["user-events"] == by_name["user-events.by-item"] == partitions
    env = env_of(by_kind(render(), "Deployment")["cascade-stream"])
    assert env["CASCADE_GROUP_ID"]["value"] == "cascade-stream"
    assert env["CASCADE_CREATE_TOPICS"]["value"] == "false"


def test_oversized_stream_autoscaling_fails_to_render(dc, repo):
    objs, problems = dc.helm_template(
        repo, "default", ["--set", "components.stream.autoscaling.maxReplicas=13"]
    )
    assert not objs and "exceeds kafka.partitions" in "\n".join(problems)


def test_deployments_never_drop_capacity(render):
    for name, w in by_kind(render(), "Deployment").items():
        assert w["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        assert "replicas" not in w["spec"], f"{name}: HPA owns replicas"


def test_no_secret_values_in_manifests(render):
    objs = render("default")
    assert not [o for o in objs if o["kind"] == "Secret"]
    for w in workloads(objs).values():
        for e in container(w).get("env", []):
            if any(s in e["name"] for s in ("PASSWORD", "TOKEN", "USERNAME")):
                assert "secretKeyRef" in e["valueFrom"], e


def test_secret_refs_wired_when_configured(dc, repo):
    objs, problems = dc.helm_template(
        repo,
        "default",
        [
            "--set",
            "config.kafka.sasl.existingSecret=kafka-creds",
            "--set",
            "config.redis.existingSecret=redis-auth",
        ],
    )
    assert not problems
    env = env_of(workloads(objs)["cascade-stream"])
    assert env["CASCADE_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-creds",
        "key": "password",
    }
    assert env["CASCADE_ONLINE_STORE__PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "redis-auth"
    auth = by_kind(objs, "TriggerAuthentication")["cascade-stream-kafka"]
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"username", "password"}


def test_alerts_cover_the_slos(render):
    rule = next(iter(by_kind(render(), "PrometheusRule").values()))
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert names == {
        "CascadeP99LatencyHigh",
        "CascadeErrorRateHigh",
        "CascadeDegradedRateHigh",
        "CascadeFeatureFreshnessStale",
        "CascadeConsumerLagHigh",
    }
    text = " ".join(r["expr"] for r in rules)
    for metric in (
        "cascade_grpc_server_handled_total",
        "cascade_grpc_server_handling_seconds_bucket",
        "cascade_recommend_total",
        "cascade_recommend_degraded_total",
        "cascade_feature_freshness_seconds",
        "cascade_stream_consumer_lag",
    ):
        assert metric in text, metric


def test_network_policies(render):
    nps = by_kind(render(), "NetworkPolicy")
    deny = nps["cascade-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    retrieval = nps["cascade-retrieval"]["spec"]["ingress"]
    allowed = [f["podSelector"]["matchLabels"][COMPONENT] for f in retrieval[0]["from"]]
    # batch-predict: the pipelines.batchPredict CronJob runs the router pipeline against retrieval
    assert allowed == ["router", "batch-predict"]
    assert retrieval[0]["ports"] == [{"port": 50052, "protocol": "TCP"}]


def test_dashboards_shipped(render):
    dashboards = [
        o
        for o in render()
        if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert dashboards and all(k.endswith(".json") for d in dashboards for k in d["data"])


def test_rollouts_render_canaries_with_analysis(render):
    objs = render("rollouts")
    rollouts = by_kind(objs, "Rollout")
    assert set(rollouts) == {f"cascade-{n}" for n in [*GRPC, "gateway"]}
    assert not set(rollouts) & set(by_kind(objs, "Deployment"))
    templates = by_kind(objs, "AnalysisTemplate")
    # cascade-ctr is opt-in (rollouts.analysis.ctr.enabled, ranking canaries only; see test_metric_names)
    assert set(templates) == {"cascade-success-rate", "cascade-p99-latency"}
    for name, r in rollouts.items():
        canary = r["spec"]["strategy"]["canary"]
        assert canary["maxUnavailable"] == 0
        assert any("setWeight" in s for s in canary["steps"]) and any("pause" in s for s in canary["steps"])
        for t in canary.get("analysis", {}).get("templates", []):
            assert t["templateName"] in templates, (name, t)
    router = rollouts["cascade-router"]["spec"]["strategy"]["canary"]["analysis"]
    assert {t["templateName"] for t in router["templates"]} == set(templates)
    assert {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}} in router["args"]
    hpa = by_kind(objs, "HorizontalPodAutoscaler")["cascade-router"]["spec"]["scaleTargetRef"]
    assert hpa == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "cascade-router"}


def test_rollouts_without_argo_api_fail_loudly(dc, repo):
    import subprocess

    proc = subprocess.run(
        [
            dc.tool("helm"),
            "template",
            "cascade",
            str(repo / "charts/cascade"),
            "-f",
            str(repo / "charts/cascade/ci/rollouts-values.yaml"),
            "--set",
            "monitoring.serviceMonitor.enabled=false,monitoring.prometheusRule.enabled=false,"
            "keda.enabled=false",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "argoproj.io/v1alpha1/Rollout" in proc.stderr


def test_gpu_values_put_triton_on_gpu_nodes(render):
    objs = render("gpu")
    triton = workloads(objs)["cascade-triton"]
    assert container(triton)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod_spec(triton)["nodeSelector"] == {"cascade.io/accelerator": "nvidia"}
    assert pod_spec(triton)["initContainers"][0]["name"] == "fetch-models"
    env = env_of(workloads(objs)["cascade-ranking"])
    assert env["CASCADE_BACKEND__TYPE"]["value"] == "triton"
    assert env["CASCADE_BACKEND__URL"]["value"] == "cascade-triton:8001"


def test_minimal_values_need_only_core_apis(render):
    kinds = {o["kind"] for o in render("minimal")}
    assert kinds <= {"ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"}
    assert "Deployment" in kinds
