"""Drive a gRPC RecommendationService with h2load: open-loop (``--rps``) or closed-loop, and parse it.

* **open loop**: every body of the mix gets one h2load process at ``rate / n_bodies`` requests/s, split
  over ``ceil(share / MAX_RPS_PER_CLIENT)`` connections (h2load's ``--rps`` is per client); ``-m`` leaves
  room for in-flight requests so a slow answer does not hold back the next send;
* **closed loop** (finding the maximum): each process keeps ``streams`` requests in flight.

h2load's own summary counts HTTP statuses only (a gRPC error is an HTTP 200 with ``grpc-status`` in
the trailers), so the caller checks gRPC codes separately (router metrics and sample calls). Latency
percentiles come from h2load's per-request ``--log-file`` (``start_us<TAB>status<TAB>duration_us``).
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

MAX_RPS_PER_CLIENT = 90.0
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
_REQUESTS_RE = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
    r"(\d+) timeout"
)
_STATUS_RE = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_FINISHED_RE = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")


@dataclass(frozen=True)
class H2loadSummary:
    """The summary block of one h2load run's stdout."""

    total: int
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    non_2xx: int
    seconds: float
    rps: float

    @staticmethod
    def parse(stdout: str) -> "H2loadSummary":
        m = _REQUESTS_RE.search(stdout)
        s = _STATUS_RE.search(stdout)
        f = _FINISHED_RE.search(stdout)
        if not (m and s and f):
            raise ValueError(f"not an h2load summary: {stdout[-400:]!r}")
        total, _started, done, ok, failed, errored, timeout = (int(x) for x in m.groups())
        c2, c3, c4, c5 = (int(x) for x in s.groups())
        secs = float(f.group(1)) / (1000.0 if f.group(2) == "ms" else 1.0)
        return H2loadSummary(total, done, ok, failed, errored, timeout, c2, c3 + c4 + c5, secs, float(f.group(3)))


def merge(summaries: Sequence[H2loadSummary]) -> H2loadSummary:
    """Sum of concurrent runs (seconds = the longest, rps = the sum)."""
    return H2loadSummary(
        total=sum(s.total for s in summaries), done=sum(s.done for s in summaries),
        succeeded=sum(s.succeeded for s in summaries), failed=sum(s.failed for s in summaries),
        errored=sum(s.errored for s in summaries), timeout=sum(s.timeout for s in summaries),
        status_2xx=sum(s.status_2xx for s in summaries), non_2xx=sum(s.non_2xx for s in summaries),
        seconds=max((s.seconds for s in summaries), default=0.0), rps=sum(s.rps for s in summaries),
    )


def parse_log(text: str) -> tuple[np.ndarray, np.ndarray]:
    """h2load ``--log-file`` -> (HTTP status int [n], latency ms float [n]); blank lines ignored."""
    status, lat = [], []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        status.append(int(parts[1]))
        lat.append(int(parts[2]) / 1000.0)
    return np.asarray(status, dtype=np.int64), np.asarray(lat, dtype=np.float64)


def percentiles(lat_ms: np.ndarray, qs: Sequence[float] = (50.0, 99.0, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles (``p50``, ``p99``, ``p99.9``); NaN when there are no samples."""
    out = {}
    x = np.sort(np.asarray(lat_ms, dtype=np.float64))
    for q in qs:
        key = f"p{q:g}"
        if not len(x):
            out[key] = math.nan
            continue
        rank = max(1, math.ceil(q * len(x) / 100.0 - 1e-9))  # 1e-9: 99.9 * 1000 / 100 is 999.0000001
        out[key] = float(x[rank - 1])
    return out


def clients_for(rate: float, max_per_client: float = MAX_RPS_PER_CLIENT) -> int:
    """Connections needed so no client exceeds ``max_per_client`` requests/s."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    return max(1, math.ceil(rate / max_per_client - 1e-9))


def open_loop_cmd(uri: str, body: Path, rate: float, duration_s: float, log_file: Path,
                  streams: int = 16) -> list[str]:
    """h2load sending ``rate`` requests/s of ``body`` for ``duration_s`` (open loop)."""
    c = clients_for(rate)
    return ["h2load", "-t", "1", "-c", str(c), "-m", str(streams), "--rps", f"{rate / c:.4f}",
            "-D", f"{duration_s:g}", "-d", str(body), *_headers(), "--log-file", str(log_file), uri]


def closed_loop_cmd(uri: str, body: Path, duration_s: float, log_file: Path, streams: int = 1) -> list[str]:
    """h2load keeping ``streams`` requests in flight on one connection for ``duration_s``."""
    return ["h2load", "-t", "1", "-c", "1", "-m", str(streams), "-D", f"{duration_s:g}", "-d", str(body),
            *_headers(), "--log-file", str(log_file), uri]


def _headers() -> list[str]:
    out = []
    for h in GRPC_HEADERS:
        out += ["-H", h]
    return out


@dataclass
class LoadResult:
    summary: H2loadSummary
    status: np.ndarray
    latency_ms: np.ndarray
    logs: list[Path] = field(default_factory=list)

    @property
    def http_ok(self) -> int:
        return int((self.status == 200).sum())


def stagger(n: int, total_rate: float | None) -> list[float]:
    """Start offsets (s) spreading ``n`` equal-rate senders evenly over one send interval: started
    together they would send in phase, i.e. in bursts of ``n`` requests."""
    if not total_rate or n <= 1:
        return [0.0] * n
    return [i / total_rate for i in range(n)]


def run_parallel(cmds: Sequence[Sequence[str]], logs: Sequence[Path], timeout_s: float,
                 offsets: Sequence[float] | None = None) -> LoadResult:
    """Start every h2load (at ``offsets`` seconds from now), wait for all (bounded), merge the results."""
    procs: list[subprocess.Popen] = []
    t0 = time.monotonic()
    outs = []
    try:
        for c, off in zip(cmds, offsets or [0.0] * len(cmds)):
            delay = t0 + off - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            procs.append(subprocess.Popen(list(c), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for p in procs:
            out, err = p.communicate(timeout=timeout_s)
            if p.returncode != 0:
                raise RuntimeError(f"h2load exited {p.returncode}: {err[-400:]}")
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    status, lat = [], []
    for log in logs:
        s, l_ = parse_log(log.read_text() if log.exists() else "")
        status.append(s)
        lat.append(l_)
    return LoadResult(merge([H2loadSummary.parse(o) for o in outs]), np.concatenate(status),
                      np.concatenate(lat), list(logs))
