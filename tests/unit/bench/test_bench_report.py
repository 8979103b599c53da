"""Ratio math, targets, capacity plan and rendering on a synthetic run record."""

from __future__ import annotations

import json
import math

import pytest
from bench_report import (
    Target, as_json, capacity_plan, hop_cpu_us, pick_load, ratio, recs_per_core_s, render, stage_ratios, summarize,
    targets,
)


def _op(cpu: float, redis: float = 0.0, p50: float = 100.0) -> dict:
    return {"calls": 100, "cpu_us": cpu, "redis_cpu_us": redis, "total_cpu_us": cpu + redis, "p50_us": p50,
            "mean_us": p50}


def _load(fraction: float, cpu: dict[str, float], recs_per_core: float, p99: float = 10.0) -> dict:
    return {"fraction": fraction, "target_rps": 100 * fraction, "achieved_rps": 100 * fraction,
            "codes": {"OK": 1000, "UNAVAILABLE": 1}, "degraded": 2, "recs": 998, "p50_ms": 3.0, "p99_ms": p99,
            "p99.9_ms": 2 * p99, "cpu_us_per_req": cpu, "recs_per_core_s": recs_per_core,
            "other_busy_cores": 0.5, "stage_mean_ms": {"router/features": {"mean_ms": 0.8, "count": 10}}}


def run_record() -> dict:
    four = {"router": 500.0, "retrieval": 300.0, "features": 300.0, "ranking": 200.0, "redis": 100.0}
    return {
        "started_at": "now", "machine": {"nproc": 2, "cpu_model": "cpu", "loadavg_start": "1", "loadavg_end": "2"},
        "model": {"version": "bench-x", "n_users": 10, "n_items": 10, "dim": 32, "ef_search": 200, "n_features": 48},
        "params": {"candidates": 100, "bodies": 24, "duration_s": 20.0, "mix": "known 70%"},
        "modes": {
            "4hop": {"max_rps": 400.0, "max_run": _load(1.0, four, 900.0), "idle_cores": {"router": 0.004},
                     "loads": [_load(0.25, four, 600.0), _load(0.5, four, 700.0, p99=20.0),
                                                  _load(0.75, four, 800.0)]},
            "colocated": {"max_rps": 900.0, "loads": [_load(0.5, {"colocated": 500.0, "redis": 100.0}, 1600.0)]},
            "naive": {"max_rps": 50.0, "loads": [_load(0.5, {"naive": 9000.0, "redis": 100.0}, 70.0)]},
        },
        "floors": {
            "ops": {"retrieval_stage": _op(240.0), "ann_floor": _op(200.0), "features_stage": _op(150.0, 120.0, 300.0),
                    "redis_floor": _op(80.0, 120.0, 250.0), "feast_sdk": _op(4000.0, 300.0, 4800.0),
                    "ranking_stage": _op(60.0), "onnx_floor": _op(50.0)},
            "ann": {"ef_search": 200, "recall_at_100": 0.96, "mean_k": 120.0}, "rows": 100.0, "cols": 48,
        },
        "echo": {"client_cpu_us": 120.0, "server_cpu_us": 130.0, "total_cpu_us": 250.0, "p50_us": 400.0},
        "checks": ["4hop before load: 24/24 sample calls OK"],
        "profiles": {"4hop/router (cascade owner)": [("Caller.__call__ (cascade_platform/client.py:79)", 0.12)]},
    }


def test_ratio_handles_missing_values() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0)) and math.isnan(ratio(math.nan, 1.0)) and math.isnan(ratio(1.0, None))
    assert recs_per_core_s(500, 0.5) == 1000.0


def test_target_met() -> None:
    assert Target("x", 2.0, 1.5, "<=").met is False
    assert Target("x", 1.5, 1.5, "<=").met is True
    assert Target("x", 8.0, 8.0, ">=").met is True
    assert Target("x", math.nan, 1.0, ">=").met is False


def test_matched_hop_uses_every_common_load_point() -> None:
    from bench_report import matched_hop_cpu_us

    four = [_load(0.25, {"a": 1300.0}, 1), _load(0.5, {"a": 1000.0}, 1), _load(0.75, {"a": 700.0}, 1)]
    colo = [_load(0.5, {"b": 400.0}, 1), _load(0.75, {"b": 400.0}, 1)]
    assert matched_hop_cpu_us(four, colo) == pytest.approx(((1000 - 400) / 3 + (700 - 400) / 3) / 2)
    assert math.isnan(matched_hop_cpu_us(four, []))


def test_pick_load_and_hop_math() -> None:
    loads = [{"fraction": 0.25}, {"fraction": 0.5}, {"fraction": 0.75}]
    assert pick_load(loads, 0.5) == {"fraction": 0.5}
    assert pick_load([], 0.5) is None
    assert hop_cpu_us(1400.0, 600.0) == pytest.approx(800.0 / 3)


def test_stage_ratios() -> None:
    sr = stage_ratios(run_record()["floors"]["ops"], hop_us=300.0, echo_us=250.0)
    assert sr["features"] == pytest.approx(270.0 / 200.0)  # Redis server CPU counted on both sides
    assert sr["ranking"] == pytest.approx(1.2)
    assert sr["retrieval"] == pytest.approx(1.2)
    assert sr["hop"] == pytest.approx(1.2)
    assert sr["features_vs_feast_sdk_speedup"] == pytest.approx(16.0)  # p50 wall


def test_summarize_and_targets() -> None:
    s = summarize(run_record())
    assert s["recs_per_core_s_4hop"] == 700.0
    assert s["recs_per_core_s_colocated"] == 1600.0
    assert s["recs_per_core_s_baseline"] == 70.0
    assert s["speedup_vs_baseline"] == pytest.approx(10.0)
    assert s["p99_ms_at_50pct"] == 20.0
    assert s["hop_cpu_us"] == pytest.approx((1400.0 - 600.0) / 3)  # colocated ran 50 % only
    assert set(s["stage_ratio"]) >= {"features", "ranking", "retrieval", "hop"}
    met = {t.name: t.met for t in targets(s)}
    assert met["4-hop recs per core-second (all processes, Redis incl.)"]
    assert met["4-hop p99 at 50% load"]
    assert met["co-located recs per core-second"]
    assert met["RPC hop / bare gRPC echo hop (CPU)"]  # (1400 - 600) / 3 / 250 = 1.07
    assert len(targets(s)) == 10
    run = run_record()
    run["floors"]["ann"]["recall_at_100"] = 0.9
    run["modes"]["4hop"]["loads"][1]["p99_ms"] = 30.0
    met = {t.name: t.met for t in targets(summarize(run))}
    assert not met["ANN recall@100 vs exact at served ef"] and not met["4-hop p99 at 50% load"]


def test_capacity_plan_from_cpu_per_request() -> None:
    rows = {r["component"]: r for r in capacity_plan(run_record())}
    # 10k rps x 500 µs / 0.6 = 8.33 cores
    assert rows["router"]["cores"] == pytest.approx(10_000 * 500e-6 / 0.6)
    assert rows["router"]["units"] == 9 and rows["router"]["unit"] == "cores"
    assert rows["redis"]["unit"] == "shards" and rows["redis"]["units"] == 2
    triton = next(r for k, r in rows.items() if k.startswith("triton"))
    assert triton["cpu_us_per_req"] == pytest.approx(50.0 + 130.0)
    assert triton["units"] == 1  # 3.0 cores -> one 4-core replica


def test_render_and_json() -> None:
    run = run_record()
    s = summarize(run)
    md = render(run, s)
    assert "| 4hop | 50% |" in md and "## Targets" in md and "## Capacity plan" in md
    assert "Caller.__call__ (cascade_platform/client.py:79)" in md
    assert "| router/features | 0.800 |" in md
    assert "| 4hop | max (closed loop" in md and "| idle (cores, no traffic) | 0.004 |" in md
    assert s["recs_per_core_s_at_max"]["4hop"] == 900.0
    doc = json.loads(json.dumps(as_json(s, run), default=float))
    for key in ("recs_per_core_s_4hop", "recs_per_core_s_colocated", "recs_per_core_s_baseline",
                "p50_ms_at_50pct", "p99_ms_at_50pct", "stage_ratio", "targets", "capacity_plan"):
        assert key in doc


def test_ceilings_price_the_floors_only() -> None:
    s = summarize(run_record())
    # total CPU of the floors: ann 200 + redis 200 (80 client + 120 server) + onnx 50 = 450 µs per request
    c = s["ceiling_recs_per_core_s"]
    assert c["colocated"] == pytest.approx(1e6 / (130.0 + 450.0))  # + the front hop's server side
    assert c["4hop"] == pytest.approx(1e6 / (130.0 + 3 * 250.0 + 450.0))  # + three client+server echo hops
    assert c["4hop"] < c["colocated"]
    text = render(run_record(), s)
    assert "Ceilings" in text and f"4-hop {c['4hop']:,.0f}" in text
