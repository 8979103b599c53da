"""h2load command lines and output parsing (no h2load run)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bench_h2load import (
    MAX_RPS_PER_CLIENT, H2loadSummary, clients_for, closed_loop_cmd, merge, open_loop_cmd, parse_log, percentiles,
)

SAMPLE = """starting benchmark...
Application protocol: h2c

finished in 3.01s, 2.67 req/s, 962B/s
requests: 8 total, 8 started, 8 done, 7 succeeded, 1 failed, 1 errored, 0 timeout
status codes: 7 2xx, 0 3xx, 1 4xx, 0 5xx
traffic: 2.82KB (2887) total, 99B (99) headers (space savings 84.72%), 2.10KB (2152) data
"""


def test_parse_summary() -> None:
    s = H2loadSummary.parse(SAMPLE)
    assert (s.total, s.done, s.succeeded, s.failed, s.errored, s.timeout) == (8, 8, 7, 1, 1, 0)
    assert (s.status_2xx, s.non_2xx) == (7, 1)
    assert s.seconds == pytest.approx(3.01) and s.rps == pytest.approx(2.67)


def test_parse_summary_in_milliseconds_and_garbage() -> None:
    ms = SAMPLE.replace("finished in 3.01s", "finished in 10.12ms")
    assert H2loadSummary.parse(ms).seconds == pytest.approx(0.01012)
    with pytest.raises(ValueError, match="not an h2load summary"):
        H2loadSummary.parse("connection refused")


def test_merge_sums_counts_and_rates() -> None:
    s = H2loadSummary.parse(SAMPLE)
    m = merge([s, s])
    assert m.total == 16 and m.status_2xx == 14 and m.seconds == s.seconds and m.rps == pytest.approx(2 * s.rps)


def test_parse_log() -> None:
    status, lat = parse_log("1795305107432019\t200\t16242\n\n1795305107836427\t200\t1500\nbad line\n")
    assert status.tolist() == [200, 200]
    assert lat.tolist() == [16.242, 1.5]


def test_percentiles_nearest_rank() -> None:
    lat = np.arange(1, 1001, dtype=float)  # 1..1000 ms
    p = percentiles(lat)
    assert p == {"p50": 500.0, "p99": 990.0, "p99.9": 999.0}
    assert percentiles(np.array([7.0]))["p99.9"] == 7.0
    assert math.isnan(percentiles(np.array([]))["p50"])


@pytest.mark.parametrize("rate,clients", [(1, 1), (90, 1), (90.5, 2), (180, 2), (181, 3), (0.3, 1)])
def test_clients_for_caps_the_rate_per_connection(rate: float, clients: int) -> None:
    assert clients_for(rate) == clients
    assert rate / clients <= MAX_RPS_PER_CLIENT


def test_open_loop_command() -> None:
    cmd = open_loop_cmd("http://127.0.0.1:1/svc/M", "body.bin", 200.0, 20, "log.txt")
    assert cmd[cmd.index("-c") + 1] == "3"
    assert float(cmd[cmd.index("--rps") + 1]) == pytest.approx(200 / 3, abs=1e-3)
    assert cmd[cmd.index("-D") + 1] == "20"
    assert "content-type: application/grpc" in cmd and "te: trailers" in cmd
    assert cmd[-1] == "http://127.0.0.1:1/svc/M"
    closed = closed_loop_cmd("http://x/y", "b", 5, "l", streams=4)
    assert "--rps" not in closed and closed[closed.index("-m") + 1] == "4"
    with pytest.raises(ValueError):
        clients_for(0)


def test_stagger_spreads_senders_over_one_interval() -> None:
    from bench_h2load import stagger

    assert stagger(4, 100.0) == pytest.approx([0.0, 0.01, 0.02, 0.03])
    assert stagger(3, None) == [0.0, 0.0, 0.0]
    assert stagger(1, 50.0) == [0.0]
