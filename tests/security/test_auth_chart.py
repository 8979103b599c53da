"""The chart's `security:` wiring is what the services read: render ci/security-values.yaml and load
each container's environment into the real settings classes; secrets are mounted by Secret name only."""

from __future__ import annotations

import posixpath
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.security

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / ".tools" / "bin" / "helm"
APIS = ["monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule", "keda.sh/v1alpha1/ScaledObject"]


def render(*values: str) -> dict[str, dict]:
    helm = str(HELM) if HELM.exists() else shutil.which("helm")
    if helm is None:
        pytest.skip("helm not installed (make deploy-tools)")
    cmd = [helm, "template", "cascade", str(REPO / "charts/cascade"), *[a for v in values for a in ("-f", v)]]
    for api in APIS:
        cmd += ["--api-versions", api]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return {
        o["metadata"]["name"]: o
        for o in yaml.safe_load_all(out.stdout)
        if o and o.get("kind") in ("Deployment", "Rollout")
    }


def env(w: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in w["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}


def mounted_secret(w: dict, file: str) -> str:
    """Secret name of the volume mounted at the directory of ``file`` (never through subPath)."""
    spec = w["spec"]["template"]["spec"]
    mounts = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == posixpath.dirname(file)]
    assert len(mounts) == 1 and "subPath" not in mounts[0] and mounts[0]["readOnly"], mounts
    vol = {v["name"]: v for v in spec["volumes"]}[mounts[0]["name"]]
    return vol["secret"]["secretName"]


def test_security_values_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade_platform.settings import ServiceSettings
    from cascade_platform.tls import ClientSecurity
    from cascade_router.settings import RouterSettings

    ws = render(str(REPO / "charts/cascade/ci/security-values.yaml"))
    router, retrieval = env(ws["cascade-router"]), env(ws["cascade-retrieval"])
    # Settings validate files exist only when they are read: construct them from the rendered env.
    for k, v in router.items():
        monkeypatch.setenv(k, v)
    rs = RouterSettings()
    assert rs.auth.mode == "api_key" and rs.rate_limit.enabled
    assert rs.rate_limit.clients["storefront"].burst == 1000 and rs.rate_limit.default.rate_per_s == 50
    assert (rs.shedding.soft_limit, rs.shedding.hard_limit) == (32, 96)
    assert mounted_secret(ws["cascade-router"], str(rs.auth.api_keys_file)) == "cascade-api-keys"
    cs = ClientSecurity()
    assert cs.client_tls.enabled and cs.internal_auth.token_file is not None
    assert mounted_secret(ws["cascade-router"], str(cs.client_tls.cert_file)) == "cascade-mtls"
    assert not rs.tls.enabled  # storefronts call the router in plaintext
    for k in router:
        monkeypatch.delenv(k)
    for k, v in retrieval.items():
        monkeypatch.setenv(k, v)
    ss = ServiceSettings()
    assert ss.tls.enabled and ss.tls.require_client_cert and ss.tls.health_port == 50099
    assert mounted_secret(ws["cascade-retrieval"], str(ss.internal_auth.token_file)) == "cascade-service-token"
    probe = ws["cascade-retrieval"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["grpc"]["port"] == 50099  # kubelet cannot speak TLS: the plaintext health-only port
    assert "CASCADE_AUTH__MODE" not in retrieval and "CASCADE_INTERNAL_AUTH__TOKEN_FILE" not in env(ws["cascade-gateway"])


def test_defaults_keep_everything_but_shedding_off() -> None:
    ws = render()
    router = env(ws["cascade-router"])
    assert router["CASCADE_AUTH__MODE"] == "none" and router["CASCADE_RATE_LIMIT__ENABLED"] == "false"
    assert "CASCADE_SHEDDING__HARD_LIMIT" in router
    for w in ws.values():
        assert not any(k.startswith(("CASCADE_TLS__", "CASCADE_CLIENT_TLS__", "CASCADE_INTERNAL_AUTH__")) for k in env(w))


def test_batch_predict_with_internal_security_is_refused_at_render_time() -> None:
    """The batch-predict job has no service token / mTLS client certs: the chart refuses the combination
    instead of rendering a job whose every call would be UNAUTHENTICATED."""
    helm = str(HELM) if HELM.exists() else shutil.which("helm")
    if helm is None:
        pytest.skip("helm not installed (make deploy-tools)")
    cmd = [helm, "template", "cascade", str(REPO / "charts/cascade"),
           "-f", str(REPO / "charts/cascade/ci/security-values.yaml"),
           "-f", str(REPO / "charts/cascade/ci/pipelines-values.yaml")]
    for api in APIS:
        cmd += ["--api-versions", api]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "pipelines.batchPredict.enabled" in out.stderr, out.stderr[-2000:]
