"""Hot reload, exposure events, interleave fallback and rank-agreement metrics, in process with the
router's real stages (downstreams are closed ports: a real outage)."""

from __future__ import annotations

import asyncio
import logging
import queue
from pathlib import Path

import numpy as np
import pytest
from cascade.router.v1 import router_pb2
from cascade_core.registry import Registry
from cascade_router.app import RouterApp
from cascade_router.exposures import ExposureLogger
from cascade_router.reload import ExperimentsWatcher
from cascade_router.settings import RouterSettings
from cascade_router.stages.side_effects import kendall_tau_b, overlap_at_k, spearman
from router_fixture_registry import VERSION, popular_ids

A = "experiments:\n  - name: e\n    variants: [{name: a, traffic: 100}]\n"
B = "experiments:\n  - name: e\n    variants: [{name: b, traffic: 100}]\n"


def test_watcher_applies_valid_changes_and_keeps_the_active_config(tmp_path: Path, caplog) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(A)
    applied = []
    w = ExperimentsWatcher(cfg, lambda c, d: applied.append((c, d)))
    config, digest = w.load()
    assert config.experiments[0].variants[0].name == "a"
    assert w.check() is False  # unchanged content
    cfg.write_text(B)
    assert w.check() is True
    assert applied[-1][0].experiments[0].variants[0].name == "b"
    active = w.active_digest
    with caplog.at_level(logging.ERROR, logger="cascade.router.experiments"):
        cfg.write_text(B.replace("traffic: 100", "traffic: 90"))
        assert w.check() is False
        assert w.check() is False  # the same rejected content is not re-logged
    rejected = [r.getMessage() for r in caplog.records]
    assert len(rejected) == 1
    assert "keeping the active config" in rejected[0] and "traffic must sum to 100, got 90" in rejected[0]
    assert str(cfg) in rejected[0]
    assert w.active_digest == active and len(applied) == 1
    cfg.unlink()  # a deleted file (ConfigMap gone) keeps the active config too
    assert w.check() is False and w.active_digest == active
    cfg.write_text(A)
    assert w.check() is True and applied[-1][0].experiments[0].variants[0].name == "a"


def test_rank_agreement_metrics() -> None:
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert spearman(a, a) == pytest.approx(1.0) and kendall_tau_b(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0) and kendall_tau_b(a, -a) == pytest.approx(-1.0)
    b = np.array([5.0, 3.0, 4.0, 2.0, 1.0])  # one discordant pair of 10
    assert kendall_tau_b(a, b) == pytest.approx(0.8)
    assert spearman(a, b) == pytest.approx(1 - 6 * 2 / (5 * 24))
    assert overlap_at_k(np.arange(20.0), np.arange(20.0)[::-1], 10) == 0.0
    assert overlap_at_k(np.arange(20.0), np.arange(20.0), 10) == 1.0


def _settings(registry: Registry, target: str, **kw) -> RouterSettings:
    return RouterSettings(artifacts_dir=registry.root, retrieval_target=target, features_target=target,
                          ranking_target=target, request_budget_s=5.0, **kw)


async def test_exposure_event_mirrors_the_response(registry: Registry, closed_target: str, tmp_path: Path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("experiments:\n  - name: e\n    variants: [{name: c, traffic: 50}, {name: t, traffic: 50}]\n")
    app = RouterApp(_settings(registry, closed_target, experiments_file=cfg,
                              exposures={"bootstrap_servers": closed_target, "queue_size": 10}))
    await app.start()
    try:
        resp = await app.servicer.Recommend(router_pb2.RecommendRequest(user_id="7", num_items=3, request_id="x1"), None)
        assert app.exposures is not None
        ev = await asyncio.to_thread(app.exposures._q.get, True, 10)  # the logger cannot connect: it waits
    finally:
        await app.stop()
    assert ev["request_id"] == "x1" and ev["user_id"] == "7"
    assert (ev["experiment"], ev["variant"], ev["kind"], ev["traffic"]) == ("e", resp.variant, "ab", 50)
    assert ev["items"] == [i.item_id for i in resp.items] == popular_ids(registry)[:3]
    assert ev["positions"] == [1, 2, 3] and ev["sources"] == ["popular"] * 3
    assert ev["model_version"] == resp.model_version and ev["degraded"] is True
    assert "teams" not in ev


def test_offer_never_blocks_and_counts_drops() -> None:
    logger = ExposureLogger("127.0.0.1:1", queue_size=3)  # never started: nothing drains the queue
    assert [logger.offer({"n": i}) for i in range(5)] == [True, True, True, False, False]
    assert [logger._q.get_nowait() for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    with pytest.raises(queue.Empty):
        logger._q.get_nowait()


async def test_interleave_with_ranking_down_serves_arm_a_in_retrieval_order(
    registry: Registry, closed_target: str, tmp_path: Path
):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("experiments:\n  - name: il\n    type: interleave\n"
                   "    variants: [{name: A, ranker_version: ''}, {name: B, ranker_version: v9}]\n")
    app = RouterApp(_settings(registry, closed_target, experiments_file=cfg))
    await app.start()
    try:
        resp = await app.servicer.Recommend(router_pb2.RecommendRequest(user_id="7", num_items=4), None)
    finally:
        await app.stop()
    assert resp.variant == "interleave" and resp.degraded
    assert resp.model_version == f"{VERSION}+retrieval-order"
    assert [i.item_id for i in resp.items] == popular_ids(registry)[:4]
