"""Cross-file consistency the individual tools cannot see: HPA metrics vs
prometheus-adapter rules, skaffold artifacts vs chart values, Dockerfile rules
(pinned bases, non-root, no torch), values documentation, one source of truth."""

import json
import re

import pytest
import yaml

SERVICES = ["router", "retrieval", "features", "ranking", "gateway", "stream"]


def _values(repo):
    return yaml.safe_load((repo / "charts/cascade/values.yaml").read_text())


@pytest.mark.parametrize("value_set", ["default", "rollouts", "gpu"])
def test_every_hpa_pod_metric_is_served_by_prometheus_adapter(render, repo, value_set):
    cm = yaml.safe_load((repo / "k8s/base/monitoring/prometheus-adapter-rules.yaml").read_text())
    served = {r["name"]["as"] for r in yaml.safe_load(cm["data"]["config.yaml"])["rules"]}
    used = {
        m["pods"]["metric"]["name"]
        for o in render(value_set)
        if o["kind"] == "HorizontalPodAutoscaler"
        for m in o["spec"]["metrics"]
        if m["type"] == "Pods"
    }
    assert used and used <= served, used - served


def test_skaffold_artifacts_feed_chart_images(repo):
    sk = yaml.safe_load((repo / "skaffold.yaml").read_text())
    components = _values(repo)["components"]
    templates = sk["deploy"]["helm"]["releases"][0]["setValueTemplates"]
    for art in sk["build"]["artifacts"]:
        name = art["image"].removeprefix("cascade-")
        assert name in components, art["image"]
        assert components[name]["image"]["repository"] == art["image"]
        key = art["image"].replace("-", "_")
        assert templates[f"components.{name}.image.repository"] == f"{{{{.IMAGE_REPO_{key}}}}}"
    profiles = {p["name"] for p in sk["profiles"]}
    assert {"dev", "gpu", "canary"} <= profiles


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_rules(repo, service):
    text = (repo / "services" / service / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(froms) >= 2, "multi-stage build expected"
    for image in froms:
        assert re.search(r":\d+\.\d+\.\d+-slim-bookworm$", image), f"unpinned or non-slim base {image}"
    assert re.search(r"^USER\s+10001:10001\s*$", text, re.MULTILINE)
    code = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "torch" not in code.replace("find_spec('torch')", ""), "serving images must not install torch"
    assert "-c constraints.txt" in text
    module = "cascade_stream.worker" if service == "stream" else f"cascade_{service}"
    assert f'ENTRYPOINT ["python", "-m", "{module}"]' in text
    ignore = (repo / "services" / service / "Dockerfile.dockerignore").read_text()
    assert f"!services/{service}" in ignore


def test_values_are_documented(repo):
    """Top-level keys carry a `# --` comment; every component key is in the documented common keys."""
    lines = (repo / "charts/cascade/values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Za-z]\w*:", line):
            j = i - 1
            while j >= 0 and lines[j].startswith("#") and not lines[j].startswith("# --"):
                j -= 1
            assert j >= 0 and lines[j].startswith("# --"), f"undocumented key: {line}"
    doc = "\n".join(lines)
    common = doc[doc.index("# -- Components. Common keys:") : doc.index("\ncomponents:")]
    for name, comp in _values(repo)["components"].items():
        for key in comp:
            assert re.search(rf"\b{key}\b", common) or re.search(rf"# --.*\n\s+{key}:", doc), f"{name}.{key}"


def test_schema_allows_global_and_rejects_unknown_keys(dc, repo):
    objs, problems = dc.helm_template(repo, "minimal", ["--set", "global.someParentValue=1"])
    assert objs and not problems
    objs, problems = dc.helm_template(repo, "minimal", ["--set", "routr.enabled=true"])
    assert not objs and "routr" in "\n".join(problems)
    schema = json.loads((repo / "charts/cascade/values.schema.json").read_text())
    assert schema["properties"]["global"]["additionalProperties"] is True


def test_k8s_reuses_the_chart(repo):
    """Overlays inflate charts/cascade (kustomize helmCharts); no service manifests are duplicated in k8s/."""
    for overlay in ("dev", "prod"):
        k = yaml.safe_load((repo / "k8s/overlays" / overlay / "kustomization.yaml").read_text())
        assert k["helmGlobals"]["chartHome"] == "../../../charts"
        assert [c["name"] for c in k["helmCharts"]] == ["cascade"]
    for f in (repo / "k8s").rglob("*.yaml"):
        assert "cascade-router" not in f.read_text() or "values" in f.name, f


def test_strimzi_topics(repo):
    topics = {
        t["spec"]["topicName"]
        for t in yaml.safe_load_all((repo / "k8s/components/strimzi-kafka/topics.yaml").read_text())
    }
    assert topics == {"user-events", "user-events.by-item", "user-events.dlq", "exposures"}
