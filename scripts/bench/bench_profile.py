"""py-spy collapsed-stack ("raw") profiles -> hot spots with file:line.

``py-spy record -f raw`` writes one line per distinct stack: ``frame;frame;...;leaf <count>`` with
frames ``function (path:line)``, root first. Two views are kept:

* ``self``: where the samples were (leaf frames) — library internals included;
* ``cascade``: each sample charged to its innermost frame in Cascade code (a path containing
  ``cascade_``), i.e. the Cascade line that owns the cost — what a service owner can change. The
  process entry points (``main``/``serve`` of ``cascade_platform/server.py``, under which the event
  loop runs everything) own nothing: samples with no other Cascade frame are charged to the event loop,
  gRPC and the interpreter.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

ROOT_FRAMES = ("main (", "serve (", "run (", "<module> (")


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    out = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        out.append((stack.split(";"), int(count)))
    return out


def _short(frame: str) -> str:
    """``fn (/long/path/site-packages/pkg/mod.py:12)`` -> ``fn (pkg/mod.py:12)``."""
    fn, sep, loc = frame.partition(" (")
    if not sep:
        return frame
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/"):
        if marker in loc:
            loc = loc.split(marker, 1)[1]
            break
    return f"{fn} ({loc}"


def hot_spots(stacks: list[tuple[list[str], int]], top: int = 8, owned: str = "cascade_") -> dict[str, list]:
    """Top ``self`` leaf frames and top ``cascade`` owning frames, as (frame, share of samples)."""
    total = sum(c for _, c in stacks) or 1
    leaf: Counter[str] = Counter()
    mine: Counter[str] = Counter()
    for frames, c in stacks:
        leaf[_short(frames[-1])] += c
        owner = next((f for f in reversed(frames) if owned in f and not f.startswith(ROOT_FRAMES)), None)
        mine[_short(owner) if owner else "(no cascade frame: event loop / grpc / interpreter)"] += c
    return {
        "self": [(f, c / total) for f, c in leaf.most_common(top)],
        "cascade": [(f, c / total) for f, c in mine.most_common(top)],
        "samples": [("samples", float(total))],
    }


def record_cmd(py_spy: str, pid: int, seconds: float, out: Path, rate: int = 200) -> list[str]:
    return [py_spy, "record", "-p", str(pid), "-d", f"{seconds:g}", "-r", str(rate), "-f", "raw",
            "-o", str(out), "--nonblocking"]


def start_record(py_spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen:
    return subprocess.Popen(record_cmd(py_spy, pid, seconds, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
