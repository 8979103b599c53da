"""The routing ConfigMap applier's Kubernetes API calls, against kmock's KubernetesEmulator.

The ``kubernetes`` client is synchronous and the emulator serves on this test's event loop, so
client calls run in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import json

import kmock as km
import pytest
from kubernetes import client

from cascade_modelops.appliers import RoutingStateError
from cascade_modelops.audit import AuditLog
from cascade_modelops.kube import CHANGE_CAUSE, HISTORY_ANNOTATION, ConfigMapApplier
from cascade_modelops.ops import ModelOps
from cascade_modelops.promotion import Promote, decide
from cascade_modelops.routing import RoutingDoc
from kube_emulator import ResourceVersionEmulator
from modelops_registry import three_versions

pytestmark = pytest.mark.kmock(cls=ResourceVersionEmulator)

NS, NAME, KEY = "shop", "cascade-model-routing", "routing.json"
CM = ("v1/configmaps", NS, NAME)
V1_DATA = RoutingDoc(default="v1").to_json()


def seed(kmock, data: str = V1_DATA, annotations: dict | None = None) -> None:
    kmock.objects[CM] = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": "1", "annotations": annotations or {}},
        "data": {KEY: data, "other.txt": "untouched"},
    }


def core_api(kmock) -> client.CoreV1Api:
    return client.CoreV1Api(client.ApiClient(client.Configuration(host=str(kmock.url).rstrip("/"))))


@pytest.fixture
def registry(tmp_path):
    return three_versions(tmp_path / "artifacts")


@pytest.fixture
def ops(kmock, registry, tmp_path) -> ModelOps:
    seed(kmock)
    applier = ConfigMapApplier(core_api(kmock), NS, NAME, KEY)
    return ModelOps(registry, applier, AuditLog(tmp_path / "audit.log"), actor="bob@laptop")


def calls(kmock) -> list[tuple[str, str | None, str | None]]:
    return [(r.method.name, r.namespace, r.name) for r in kmock]


def stored(kmock) -> dict:
    return dict(kmock.objects[CM])


async def test_promote_reads_then_patches_data_and_annotations(kmock, ops):
    out = await asyncio.to_thread(ops.promote, "ranker", "v2", 10)

    assert calls(kmock) == [("GET", NS, NAME), ("PATCH", NS, NAME)]
    patch = list(kmock[km.method.PATCH])[0]
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    ts = out.record.ts
    assert patch.data == {
        "metadata": {
            "resourceVersion": "1",
            "annotations": {
                HISTORY_ANNOTATION: "[]",
                "cascade.dev/last-action": "promote-canary",
                "cascade.dev/last-version": "v2",
                "cascade.dev/changed-by": "bob@laptop",
                "cascade.dev/changed-at": ts,
                CHANGE_CAUSE: f"canary v2 at 10% next to default v1 (by bob@laptop at {ts})",
            },
        },
        "data": {KEY: '{"default": "v1", "canary": "v2", "canary_weight": 10}\n'},
    }
    obj = stored(kmock)
    assert obj["data"] == {KEY: '{"default": "v1", "canary": "v2", "canary_weight": 10}\n', "other.txt": "untouched"}
    assert obj["metadata"]["resourceVersion"] == "2"
    assert out.record.target == f"configmap:{NS}/{NAME}"


async def test_abort_drops_canary_and_keeps_history(kmock, ops):
    await asyncio.to_thread(ops.promote, "ranker", "v2", 30)
    await asyncio.to_thread(ops.abort, "ranker")
    assert calls(kmock) == [("GET", NS, NAME), ("PATCH", NS, NAME)] * 2
    last = list(kmock[km.method.PATCH])[-1].data
    assert last["data"] == {KEY: V1_DATA}
    assert last["metadata"]["annotations"]["cascade.dev/last-action"] == "abort"
    assert last["metadata"]["annotations"][HISTORY_ANNOTATION] == "[]"
    assert last["metadata"]["resourceVersion"] == "2"


async def test_full_promotion_then_rollback_restores_previous_data(kmock, ops):
    await asyncio.to_thread(ops.promote, "ranker", "v2", 50)
    await asyncio.to_thread(ops.promote, "ranker", "v2")
    obj = stored(kmock)
    assert obj["data"][KEY] == RoutingDoc(default="v2").to_json()
    assert json.loads(obj["metadata"]["annotations"][HISTORY_ANNOTATION]) == ["v1"]

    out = await asyncio.to_thread(ops.rollback, "ranker")
    obj = stored(kmock)
    assert obj["data"][KEY] == V1_DATA  # byte-for-byte what the ConfigMap held before the rollout
    assert json.loads(obj["metadata"]["annotations"][HISTORY_ANNOTATION]) == []
    assert obj["metadata"]["annotations"]["cascade.dev/last-action"] == "rollback"
    assert out.decision.version == "v1"
    assert calls(kmock) == [("GET", NS, NAME), ("PATCH", NS, NAME)] * 3
    assert [r["action"] for r in AuditLog(ops.audit.path).records()] == ["promote-canary", "promote-full", "rollback"]


async def test_refused_promotion_only_reads(kmock, ops):
    from cascade_modelops.promotion import PromotionError

    with pytest.raises(PromotionError, match="unknown model version|not found"):
        await asyncio.to_thread(ops.promote, "ranker", "v9", 10)
    with pytest.raises(PromotionError, match="no previous default"):
        await asyncio.to_thread(ops.rollback, "ranker")
    assert calls(kmock) == [("GET", NS, NAME)] * 2
    assert stored(kmock)["data"][KEY] == V1_DATA


async def test_conflicting_write_is_retried_on_the_fresh_state(kmock):
    """Another operator changes the ConfigMap between our GET and PATCH: 409, then decide again."""
    seed(kmock)
    applier = ConfigMapApplier(core_api(kmock), NS, NAME, KEY)
    seen: list[RoutingDoc] = []

    def change(state):
        seen.append(state.routing)
        if len(seen) == 1:  # the concurrent write lands after our read
            kmock.objects[CM].patch({"data": {KEY: RoutingDoc(default="v1", canary="v3", canary_weight=5).to_json()}})
            kmock.bump(CM)
        return decide(state, Promote("v2", 20), {"v1", "v2", "v3"})

    from cascade_modelops.appliers import ChangeMeta

    decision = await asyncio.to_thread(applier.update, change, ChangeMeta("bob", "t0"))
    assert seen == [RoutingDoc(default="v1"), RoutingDoc(default="v1", canary="v3", canary_weight=5)]
    assert decision.notes == ("replaced canary v3",)
    assert calls(kmock) == [("GET", NS, NAME), ("PATCH", NS, NAME), ("GET", NS, NAME), ("PATCH", NS, NAME)]
    assert stored(kmock)["data"][KEY] == RoutingDoc(default="v1", canary="v2", canary_weight=20).to_json()


async def test_missing_configmap_and_key_name_the_fix(kmock):
    api = core_api(kmock)
    with pytest.raises(RoutingStateError, match="ConfigMap shop/absent not found: install the ranking chart"):
        await asyncio.to_thread(ConfigMapApplier(api, NS, "absent").read)
    seed(kmock)
    with pytest.raises(RoutingStateError, match="has no data key 'model.json'"):
        await asyncio.to_thread(ConfigMapApplier(api, NS, NAME, "model.json").read)
