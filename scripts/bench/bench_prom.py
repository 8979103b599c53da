"""Prometheus text-format scraping and deltas: gRPC codes, degraded responses, stage histograms."""

from __future__ import annotations

import re
import urllib.request
from typing import Mapping

Sample = tuple[str, frozenset[tuple[str, str]]]
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[Sample, float]:
    """``{(metric name, frozenset of (label, value)): value}`` for every sample line."""
    out: dict[Sample, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        labels = frozenset(_LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def scrape(port: int, timeout_s: float = 5.0) -> dict[Sample, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as r:
        return parse(r.read().decode())


def select(samples: Mapping[Sample, float], name: str, **labels: str) -> dict[frozenset, float]:
    """Samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return {lab: v for (n, lab), v in samples.items() if n == name and want <= lab}


def diff(before: Mapping[Sample, float], after: Mapping[Sample, float]) -> dict[Sample, float]:
    """after - before for every sample in ``after`` (missing before = 0)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def codes(d: Mapping[Sample, float], service: str, method: str) -> dict[str, int]:
    """``cascade_grpc_server_handled_total`` per gRPC code for one service/method (non-zero only)."""
    out: dict[str, int] = {}
    for lab, v in select(d, "cascade_grpc_server_handled_total", service=service, method=method).items():
        if round(v):
            out[dict(lab)["code"]] = int(round(v))
    return out


def total(d: Mapping[Sample, float], name: str, **labels: str) -> float:
    return sum(select(d, name, **labels).values())


def hist_means(d: Mapping[Sample, float], name: str, **labels: str) -> dict[str, tuple[float, int]]:
    """Mean seconds and count per ``stage`` label of a histogram delta (``_sum`` / ``_count``)."""
    sums = select(d, f"{name}_sum", **labels)
    counts = select(d, f"{name}_count", **labels)
    out = {}
    for lab, c in counts.items():
        if c > 0:
            key = "/".join(v for k, v in sorted(lab) if k not in labels)
            out[key] = (sums.get(lab, 0.0) / c, int(c))
    return out
