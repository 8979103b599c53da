"""PSI / KS drift comparison and the retrain gate, on known distributions and real registry files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from cascade_pipelines import drift

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "router"))
from router_fixture_registry import build_registry  # noqa: E402


def test_psi_is_zero_for_equal_and_large_for_shifted_distributions() -> None:
    rng = np.random.default_rng(0)
    ref = drift.summarize({"x": rng.standard_normal(20_000), "item_category": np.array(["a", "b"] * 500)})
    same = drift.compare(ref, {"x": rng.standard_normal(5000), "item_category": np.array(["a", "b"] * 100)})
    assert all(f.psi < 0.01 and not f.drifted for f in same)
    shifted = drift.compare(ref, {"x": rng.standard_normal(5000) + 1.0,
                                  "item_category": np.array(["a"] * 150 + ["b"] * 40 + ["new"] * 10)})
    by = {f.feature: f for f in shifted}
    assert by["x"].psi > 0.5 and by["x"].drifted and by["x"].ks_statistic > 0.3
    assert by["item_category"].psi > 0.2 and by["item_category"].drifted  # unseen "new" counts too
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_ks_does_not_vote_for_discrete_features() -> None:
    ref = drift.summarize({"few": np.repeat(np.arange(5.0), 400)})
    # a modest reshuffle of mass over 5 values: KS D is large, PSI small
    cur = np.repeat(np.arange(5.0), [330, 400, 400, 400, 470])
    (f,) = drift.compare(ref, {"few": cur}, psi_threshold=0.2, ks_threshold=0.02)
    assert f.ks_statistic >= 0.02 and f.psi < 0.2 and not f.drifted


def test_gate_compares_offline_metrics(tmp_path: Path) -> None:
    reg = build_registry(tmp_path / "a", version="cur")
    build_registry(tmp_path / "a", version="cand", seed=8)
    reg.set_latest("cur")

    def set_metric(version: str, value: float | None) -> None:
        m = reg.manifest(version)
        reg.write_manifest(m.model_copy(update={"metrics": {} if value is None else {"pipeline": {"ndcg@10": value}}}))

    set_metric("cur", 0.30)
    set_metric("cand", 0.31)
    assert drift.gate(reg, "cand").promote
    assert not drift.gate(reg, "cand", min_improvement=0.05).promote
    set_metric("cand", 0.30)
    d = drift.gate(reg, "cand")
    assert not d.promote and "does not beat" in d.reason
    set_metric("cand", None)
    assert not drift.gate(reg, "cand").promote  # a candidate without the metric is never promoted
