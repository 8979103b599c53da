"""CPU accounting from /proc (parsing on fixed content, plus a sanity read of this process)."""

from __future__ import annotations

import pytest
from bench_procstat import CLK_TCK, CpuDelta, Snapshot, cpu_seconds, delta, parse_machine, parse_stat, snapshot

# comm with spaces and parentheses; utime=1234 (field 14), stime=56 (field 15)
STAT = ("4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 7 8 20 0 3 0 100 1000 10 "
        "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")
PROC_STAT = "cpu  100 5 50 800 45 0 0 0 0 0\ncpu0 50 2 25 400 20 0 0 0 0 0\nintr 1 2 3\n"


def test_parse_stat_counts_fields_after_the_last_paren() -> None:
    assert parse_stat(STAT) == (1234, 56)


def test_cpu_seconds_from_a_fake_proc(tmp_path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text(STAT)
    assert cpu_seconds(4242, proc=tmp_path) == pytest.approx((1234 + 56) / CLK_TCK)


def test_parse_machine_busy_excludes_idle_and_iowait() -> None:
    busy, total = parse_machine(PROC_STAT)
    assert total == pytest.approx(1000 / CLK_TCK)
    assert busy == pytest.approx((1000 - 800 - 45) / CLK_TCK)
    with pytest.raises(ValueError):
        parse_machine("intr 1\n")


def test_delta_and_other_load() -> None:
    a = Snapshot(10.0, {"router": 1.0, "redis": 0.5}, machine_busy=100.0, machine_total=400.0)
    b = Snapshot(12.0, {"router": 1.8, "redis": 0.7}, machine_busy=103.0, machine_total=404.0)
    d = delta(a, b)
    assert d.seconds == 2.0
    assert d.per_process == pytest.approx({"router": 0.8, "redis": 0.2})
    assert d.measured == pytest.approx(1.0)
    assert d.other == pytest.approx(2.0)
    assert CpuDelta(1.0, {"x": 2.0}, 1.0, 2.0).other == 0.0  # never negative


def test_snapshot_of_this_process_is_monotonic() -> None:
    import os

    a = snapshot({"me": os.getpid()}, 0.0)
    sum(i * i for i in range(200_000))
    b = snapshot({"me": os.getpid()}, 1.0)
    assert b.per_pid["me"] >= a.per_pid["me"] >= 0
    assert b.machine_total >= a.machine_total
