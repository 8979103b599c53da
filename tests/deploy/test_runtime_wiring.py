"""The chart wires what the services and pipelines actually read (issues 5 and 6):

* ranking's hot-reloaded routing file: the ConfigMap the promotion tooling patches, mounted as a
  directory (never subPath), CASCADE_MODEL_ROUTING_FILE pointing into that mount;
* the router's hot-reloaded experiments file, parsed with the router's own loader, and exposure
  logging to the chart's Kafka;
* the scheduled pipelines (drift -> retrain, batch predictions) as hardened CronJobs whose commands
  are real modules with real flags.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
import sys

import pytest
import yaml

from test_chart import by_kind, container, env_of, pod_spec, workloads


def _values(repo):
    return yaml.safe_load((repo / "charts/cascade/values.yaml").read_text())


def _config_mount(w, env_name: str) -> tuple[dict, dict, str]:
    """(volumeMount, volume, file path) of the file an env var names."""
    path = env_of(w)[env_name]["value"]
    mounts = [m for m in container(w)["volumeMounts"] if m["mountPath"] == posixpath.dirname(path)]
    assert len(mounts) == 1, (env_name, path, container(w)["volumeMounts"])
    volume = {v["name"]: v for v in pod_spec(w)["volumes"]}[mounts[0]["name"]]
    return mounts[0], volume, path


@pytest.mark.parametrize("value_set", ["default", "rollouts", "gpu"])
def test_no_configmap_is_mounted_with_subpath(render, value_set):
    """kubelet never updates a subPath mount: hot-reloaded files must be whole-volume mounts."""
    for name, w in workloads(render(value_set)).items():
        cm_volumes = {v["name"] for v in pod_spec(w)["volumes"] if "configMap" in v}
        for c in pod_spec(w)["containers"] + pod_spec(w).get("initContainers", []):
            for m in c.get("volumeMounts", []):
                assert not (m["name"] in cm_volumes and "subPath" in m), (name, c["name"], m)


@pytest.mark.parametrize("value_set", ["default", "rollouts", "gpu"])
def test_ranking_mounts_the_routing_configmap_the_promotion_tool_patches(render, repo, value_set):
    from cascade_modelops.kube import DEFAULT_CONFIGMAP, DEFAULT_KEY
    from cascade_ranking.routing import ModelRouting

    objs = render(value_set)
    w = workloads(objs)["cascade-ranking"]
    mount, volume, path = _config_mount(w, "CASCADE_MODEL_ROUTING_FILE")
    assert "subPath" not in mount and mount["readOnly"] is True
    # kubectl cascade's defaults (release "cascade") find exactly this ConfigMap and key.
    assert volume["configMap"]["name"] == DEFAULT_CONFIGMAP and "items" not in volume["configMap"]
    assert posixpath.basename(path) == DEFAULT_KEY
    cm = by_kind(objs, "ConfigMap")[DEFAULT_CONFIGMAP]
    assert cm["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    routing = ModelRouting.model_validate_json(cm["data"][DEFAULT_KEY])
    assert routing.default == _values(repo)["modelVersion"] and routing.canary is None
    assert float(env_of(w)["CASCADE_ROUTING_POLL_S"]["value"]) > 0
    # every registry version's ranker files are fetched, so a promoted version can load
    fetch = " ".join(pod_spec(w)["initContainers"][0]["command"])
    assert "*/ranker.onnx" in fetch and "*/manifest.json" in fetch and fetch.rstrip('"').endswith("/registry/")


def test_initial_routing_from_values_is_a_valid_canary(dc, repo):
    from cascade_ranking.routing import ModelRouting

    objs, problems = dc.helm_template(repo, "default", [
        "--set", "components.ranking.routing.initial.canary=v2,components.ranking.routing.initial.canaryWeight=10"])
    assert not problems
    routing = ModelRouting.model_validate_json(by_kind(objs, "ConfigMap")["cascade-model-routing"]["data"]["routing.json"])
    assert (routing.default, routing.canary, routing.canary_weight) == ("v1", "v2", 10)
    objs, problems = dc.helm_template(repo, "default", ["--set", "components.ranking.routing.initial.canary=v2"])
    assert not objs and "canaryWeight" in "\n".join(problems)


@pytest.mark.parametrize("value_set", ["default", "rollouts"])
def test_router_mounts_experiments_and_logs_exposures_to_kafka(render, repo, value_set):
    from cascade_router.experiments import parse_experiments_text

    objs = render(value_set)
    w = workloads(objs)["cascade-router"]
    mount, volume, path = _config_mount(w, "CASCADE_EXPERIMENTS_FILE")
    assert "subPath" not in mount
    cm = by_kind(objs, "ConfigMap")[volume["configMap"]["name"]]
    text = cm["data"][posixpath.basename(path)]
    config = parse_experiments_text(text, f"ConfigMap {cm['metadata']['name']}")
    assert config.experiments[0].variants[0].name == "control"
    env = env_of(w)
    values = _values(repo)
    assert env["CASCADE_EXPOSURES__BOOTSTRAP_SERVERS"]["value"] == values["config"]["kafka"]["bootstrapServers"]
    topic = env["CASCADE_EXPOSURES__TOPIC"]["value"]
    strimzi = yaml.safe_load_all((repo / "k8s/components/strimzi-kafka/topics.yaml").read_text())
    assert topic in {t["spec"]["topicName"] for t in strimzi}
    # the env names are the router's settings (pydantic-settings would ignore a typo silently)
    from cascade_router.settings import RouterSettings

    plain = {e["name"]: e["value"] for e in container(w)["env"] if "value" in e}
    s = RouterSettings(**{k.removeprefix("CASCADE_").lower(): v for k, v in plain.items()
                          if k in ("CASCADE_EXPERIMENTS_FILE", "CASCADE_EXPERIMENTS_POLL_S")},
                       exposures={"bootstrap_servers": plain["CASCADE_EXPOSURES__BOOTSTRAP_SERVERS"],
                                  "topic": topic, "queue_size": plain["CASCADE_EXPOSURES__QUEUE_SIZE"],
                                  "security_protocol": plain["CASCADE_EXPOSURES__SECURITY_PROTOCOL"]})
    assert s.exposures.enabled and str(s.experiments_file) == path


def test_exposure_producer_gets_kafka_secrets_and_ca(dc, repo):
    objs, problems = dc.helm_template(repo, "default", [
        "--set", "config.kafka.sasl.existingSecret=kafka-creds,config.kafka.securityProtocol=SASL_SSL,"
                 "config.kafka.tls.caSecret=kafka-ca"])
    assert not problems
    w = workloads(objs)["cascade-router"]
    env = env_of(w)
    assert env["CASCADE_EXPOSURES__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-creds", "key": "password"}
    assert env["CASCADE_EXPOSURES__SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    ca = env["CASCADE_EXPOSURES__SSL_CAFILE"]["value"]
    assert posixpath.dirname(ca) in {m["mountPath"] for m in container(w)["volumeMounts"]}


def _experiments_values(tmp_path, variants) -> list[str]:
    f = tmp_path / "experiments-values.yaml"
    f.write_text(yaml.safe_dump({"components": {"router": {"experiments": {"config": {
        "experiments": [{"name": "ranker-ab", "variants": variants}]}}}}}))
    return ["-f", str(f)]


def test_experiment_values_are_checked(dc, repo, tmp_path):
    """A typo is a schema error; a cross-field mistake is caught by the router's own parser."""
    from cascade_router.experiments import ExperimentConfigError, parse_experiments_text

    good = [{"name": "control", "traffic": 50}, {"name": "treatment", "ranker_version": "v2", "traffic": 50}]
    objs, problems = dc.helm_template(repo, "default", _experiments_values(tmp_path, good))
    assert not problems
    text = by_kind(objs, "ConfigMap")["cascade-experiments"]["data"]["experiments.yaml"]
    assert [v.name for v in parse_experiments_text(text).experiments[0].variants] == ["control", "treatment"]
    typo = [{"name": "control", "trafic": 50}, {"name": "treatment", "traffic": 50}]
    objs, problems = dc.helm_template(repo, "default", _experiments_values(tmp_path, typo))
    assert not objs and "trafic" in "\n".join(problems)
    bad_sum = [{"name": "control", "traffic": 50}, {"name": "treatment", "traffic": 40}]
    objs, problems = dc.helm_template(repo, "default", _experiments_values(tmp_path, bad_sum))
    assert not problems
    text = by_kind(objs, "ConfigMap")["cascade-experiments"]["data"]["experiments.yaml"]
    with pytest.raises(ExperimentConfigError, match="sum to 100"):
        parse_experiments_text(text)


# ------------------------------------------------------------------------ CronJobs


def _jobs(render):
    return by_kind(render("pipelines"), "CronJob")


def _job_container(cj):
    spec = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return next(c for c in spec["initContainers"] if c["command"][:2] == ["python", "-m"])


def test_cronjobs_render_hardened(render):
    jobs = _jobs(render)
    assert set(jobs) == {"cascade-drift", "cascade-batch-predict"}
    assert not by_kind(render("default"), "CronJob"), "pipelines are opt-in"
    for name, cj in jobs.items():
        assert cj["apiVersion"] == "batch/v1"
        spec = cj["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert 0 < spec["successfulJobsHistoryLimit"] <= 10 and 0 < spec["failedJobsHistoryLimit"] <= 10
        job = spec["jobTemplate"]["spec"]
        assert job["activeDeadlineSeconds"] > 0 and job["backoffLimit"] >= 0
        pod = job["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == "cascade"  # IRSA: reads/writes the model bucket
        vols = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in vols["tmp"] and "emptyDir" in vols["artifacts"]
        for c in pod["initContainers"] + pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}
        # pull -> job -> upload: the upload runs only after the job container succeeded
        assert [c["name"] for c in pod["initContainers"]][0] == "fetch-artifacts"
        assert [c["name"] for c in pod["containers"]] == ["upload-artifacts"]
        assert "cascade-pipelines:" in _job_container(cj)["image"]


@pytest.mark.parametrize("job", ["cascade-drift", "cascade-batch-predict"])
def test_cronjob_command_is_a_real_module_with_real_flags(render, repo, job):
    c = _job_container(_jobs(render)[job])
    module = c["command"][2]
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                          timeout=120, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    known = set(re.findall(r"--[a-z][a-z0-9-]*", proc.stdout))
    used = {a.split("=")[0] for a in c["args"] if a.startswith("--")}
    assert used <= known, f"{module} has no {sorted(used - known)}"


def test_drift_cronjob_checks_then_retrains(render, repo):
    """cascade_pipelines.drift writes a retrain request when it detects drift and, with --retrain in
    the same run, trains/gates a candidate for every pending request: the CronJob runs exactly that."""
    args = _job_container(_jobs(render)["cascade-drift"])["args"]
    assert "--bootstrap" in args and "--retrain" in args
    assert args[args.index("--bootstrap") + 1] == "$(CASCADE_KAFKA__BOOTSTRAP_SERVERS)"
    assert args[args.index("--model-version") + 1] == _values(repo)["modelVersion"]


def test_drift_cronjob_refuses_kafka_it_cannot_read(dc, repo):
    objs, problems = dc.helm_template(repo, "pipelines", ["--set", "config.kafka.securityProtocol=SASL_SSL"])
    assert not objs and "cascade_pipelines.drift" in "\n".join(problems)


def test_batch_predict_reaches_the_services(render):
    objs = render("pipelines")
    cj = by_kind(objs, "CronJob")["cascade-batch-predict"]
    c = _job_container(cj)
    args = c["args"]
    for dep, port in (("retrieval", 50052), ("features", 50053), ("ranking", 50054)):
        assert args[args.index(f"--{dep}-target") + 1] == f"dns:///cascade-{dep}-headless:{port}"
        np_ = by_kind(objs, "NetworkPolicy")[f"cascade-{dep}"]["spec"]["ingress"][0]["from"]
        pod_labels = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert any(
            all(pod_labels.get(k) == v for k, v in f.get("podSelector", {}).get("matchLabels", {}).items())
            for f in np_ if "podSelector" in f
        ), dep
    redis = args[args.index("--redis") + 1]
    assert redis.startswith("redis://:$(CASCADE_ONLINE_STORE__PASSWORD)@")
    env = {e["name"]: e for e in c["env"]}
    assert env["CASCADE_ONLINE_STORE__PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "redis-auth"


def test_pipelines_dockerfile(repo):
    text = (repo / "pipelines/Dockerfile").read_text()
    assert re.search(r"^USER\s+10001:10001\s*$", text, re.MULTILINE)
    assert all(re.search(r":\d+\.\d+\.\d+-slim-bookworm$", f) for f in re.findall(r"^FROM\s+(\S+)", text, re.M))
    assert "torch==2.13.0" in text and "download.pytorch.org/whl/cpu" in text  # CPU wheel, no CUDA
    assert "-c constraints.txt" in text
    assert "!pipelines" in (repo / "pipelines/Dockerfile.dockerignore").read_text()
