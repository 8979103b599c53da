"""``scripts/kubectl-cascade`` as kubectl runs it (a subprocess), against kmock's KubernetesEmulator
through a kubeconfig: promote --canary, --full, rollback, abort; exit codes and messages."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from cascade_modelops.kube import HISTORY_ANNOTATION
from cascade_modelops.routing import RoutingDoc
from kube_emulator import ResourceVersionEmulator
from modelops_registry import three_versions

pytestmark = pytest.mark.kmock(cls=ResourceVersionEmulator)

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "scripts" / "kubectl-cascade"
NS, NAME, KEY = "shop", "cascade-model-routing", "routing.json"
CM = ("v1/configmaps", NS, NAME)


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(json.dumps({  # JSON is YAML
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "emu", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "emu", "user": "tester", "namespace": NS}}],
    }))
    return path


async def kubectl_cascade(tmp: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "KUBECONFIG": str(tmp / "kubeconfig"), "CASCADE_ARTIFACTS_DIR": str(tmp / "artifacts"),
           "CASCADE_DATA_DIR": str(tmp / "data"), "CASCADE_ACTOR": "ci-bot", "CASCADE_MLFLOW_TRACKING_URI": ""}
    proc = await asyncio.create_subprocess_exec(str(PLUGIN), *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def cluster(kmock, tmp_path):
    three_versions(tmp_path / "artifacts")
    kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))
    kmock.objects[CM] = {"metadata": {"name": NAME, "namespace": NS, "resourceVersion": "7"},
                         "data": {KEY: RoutingDoc(default="v1").to_json()}}
    return tmp_path


def data(kmock) -> dict:
    return json.loads(dict(kmock.objects[CM])["data"][KEY])


async def test_plugin_rollout_through_the_kubernetes_api(kmock, cluster):
    rc, out, err = await kubectl_cascade(cluster, "promote", "ranker", "v2", "--canary", "10")
    assert rc == 0, err
    assert "canary v2 at 10% next to default v1" in out and f"configmap:{NS}/{NAME}" in out
    assert data(kmock) == {"default": "v1", "canary": "v2", "canary_weight": 10}
    annotations = dict(kmock.objects[CM])["metadata"]["annotations"]
    assert annotations["cascade.dev/changed-by"] == "ci-bot"

    rc, _, err = await kubectl_cascade(cluster, "promote", "ranker", "v2", "--full")
    assert rc == 0, err
    assert data(kmock) == {"default": "v2", "canary": None, "canary_weight": 0}
    assert json.loads(dict(kmock.objects[CM])["metadata"]["annotations"][HISTORY_ANNOTATION]) == ["v1"]

    rc, _, err = await kubectl_cascade(cluster, "rollback", "ranker")
    assert rc == 0, err
    assert data(kmock) == {"default": "v1", "canary": None, "canary_weight": 0}

    rc, _, err = await kubectl_cascade(cluster, "promote", "ranker", "v2", "--canary", "5")
    assert rc == 0, err
    rc, out, err = await kubectl_cascade(cluster, "abort", "ranker")
    assert rc == 0, err
    assert data(kmock) == {"default": "v1", "canary": None, "canary_weight": 0}

    audit = [json.loads(line) for line in (cluster / "data" / "audit.log").read_text().splitlines()]
    assert [(a["action"], a["actor"], a["target"]) for a in audit] == [
        (action, "ci-bot", f"configmap:{NS}/{NAME}")
        for action in ("promote-canary", "promote-full", "rollback", "promote-canary", "abort")]
    methods = [r.method.name for r in kmock]
    assert methods == ["GET", "PATCH"] * 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("promote", "ranker", "v2", "--canary", "150"), "canary weight must be 1-99"),
        (("promote", "ranker", "v1", "--full"), "v1 is already the default"),
        (("promote", "ranker", "v-odd", "--canary", "10"), "feature 0 is 'renamed_feature'"),
        (("rollback", "ranker"), "no previous default to roll back to"),
        (("abort", "ranker"), "no canary to abort"),
    ],
)
async def test_plugin_refusals_exit_2_and_patch_nothing(kmock, cluster, args, message):
    rc, _, err = await kubectl_cascade(cluster, *args)
    assert rc == 2, err
    assert message in err
    assert [r.method.name for r in kmock] == ["GET"]
    assert data(kmock) == {"default": "v1", "canary": None, "canary_weight": 0}


async def test_plugin_names_a_missing_configmap(kmock, cluster):
    rc, _, err = await kubectl_cascade(cluster, "promote", "ranker", "v2", "--canary", "10", "--configmap", "nope")
    assert rc == 1
    assert f"ConfigMap {NS}/nope not found" in err
