"""CPU accounting from ``/proc``: per-process user+system time (all threads) and machine-wide busy time.

``/proc/<pid>/stat`` fields 14 and 15 (``utime``, ``stime``) are in clock ticks and cover every thread
of the process. The command name (field 2) may contain spaces and parentheses, so fields are counted
after the *last* ``)``. ``/proc/stat``'s first line gives machine-wide jiffies, used to report how
busy the machine was with work other than the measured processes (the bench shares its cores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, int]:
    """(utime, stime) in ticks from the content of ``/proc/<pid>/stat``."""
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): utime = field 14 -> rest[11], stime = field 15 -> rest[12]
    return int(rest[11]), int(rest[12])


def cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float:
    """User + system CPU seconds used so far by ``pid`` (all threads)."""
    u, s = parse_stat((proc / str(pid) / "stat").read_text())
    return (u + s) / CLK_TCK


def rss_mb(pid: int, proc: Path = Path("/proc")) -> float:
    for line in (proc / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def parse_machine(text: str) -> tuple[float, float]:
    """(busy, total) seconds from ``/proc/stat``'s aggregate ``cpu`` line (idle + iowait = not busy)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            vals = [int(x) for x in line.split()[1:]]
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
            total = sum(vals[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
            return (total - idle) / CLK_TCK, total / CLK_TCK
    raise ValueError("no aggregate cpu line in /proc/stat")


@dataclass(frozen=True)
class Snapshot:
    t: float
    per_pid: dict[str, float]
    machine_busy: float
    machine_total: float


def snapshot(pids: Mapping[str, int], now: float, proc: Path = Path("/proc")) -> Snapshot:
    busy, total = parse_machine((proc / "stat").read_text())
    return Snapshot(now, {name: cpu_seconds(pid, proc) for name, pid in pids.items()}, busy, total)


@dataclass(frozen=True)
class CpuDelta:
    seconds: float  # wall seconds between the snapshots
    per_process: dict[str, float]  # CPU seconds per named process
    machine_busy: float  # CPU seconds the whole machine was busy
    machine_total: float  # CPU seconds available (cores x wall)

    @property
    def measured(self) -> float:
        return sum(self.per_process.values())

    @property
    def other(self) -> float:
        """Busy CPU seconds of everything else on the machine (other users, the load generator)."""
        return max(0.0, self.machine_busy - self.measured)


def delta(a: Snapshot, b: Snapshot) -> CpuDelta:
    return CpuDelta(
        seconds=b.t - a.t,
        per_process={k: b.per_pid[k] - a.per_pid[k] for k in a.per_pid},
        machine_busy=b.machine_busy - a.machine_busy,
        machine_total=b.machine_total - a.machine_total,
    )
