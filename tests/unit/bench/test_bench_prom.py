"""Prometheus text parsing and the deltas the bench reads."""

from __future__ import annotations

import pytest
from bench_prom import codes, diff, hist_means, parse, select, total

BEFORE = """# HELP cascade_grpc_server_handled_total RPCs completed by the server.
# TYPE cascade_grpc_server_handled_total counter
cascade_grpc_server_handled_total{code="OK",method="Recommend",service="router"} 10.0
cascade_grpc_server_handled_total{code="OK",method="Check",service="router"} 3.0
cascade_stage_seconds_sum{service="router",stage="features"} 0.5
cascade_stage_seconds_count{service="router",stage="features"} 100.0
cascade_recommend_degraded_total{variant="control"} 1.0
"""
AFTER = """cascade_grpc_server_handled_total{code="OK",method="Recommend",service="router"} 110.0
cascade_grpc_server_handled_total{code="UNAVAILABLE",method="Recommend",service="router"} 2.0
cascade_grpc_server_handled_total{code="OK",method="Check",service="router"} 9.0
cascade_stage_seconds_sum{service="router",stage="features"} 0.9
cascade_stage_seconds_count{service="router",stage="features"} 300.0
cascade_stage_seconds_count{service="router",stage="ranking"} 0.0
cascade_recommend_degraded_total{variant="control"} 4.0
cascade_recommend_degraded_total{variant="treat"} 2.0
weird_metric{label="a \\"quoted\\" value"} 1e3
"""


def test_parse_labels_and_values() -> None:
    s = parse(AFTER)
    assert s[("weird_metric", frozenset({("label", 'a \\"quoted\\" value')}))] == 1000.0
    assert len(select(s, "cascade_grpc_server_handled_total", service="router", method="Recommend")) == 2


def test_codes_delta_per_method() -> None:
    d = diff(parse(BEFORE), parse(AFTER))
    assert codes(d, "router", "Recommend") == {"OK": 100, "UNAVAILABLE": 2}
    assert codes(d, "router", "Check") == {"OK": 6}
    assert total(d, "cascade_recommend_degraded_total") == 5.0


def test_hist_means_from_sum_and_count() -> None:
    d = diff(parse(BEFORE), parse(AFTER))
    means = hist_means(d, "cascade_stage_seconds")
    assert list(means) == ["router/features"]
    mean, count = means["router/features"]
    assert count == 200 and mean == pytest.approx(0.4 / 200)
    assert hist_means(d, "cascade_stage_seconds", service="router") == {"features": means["router/features"]}
