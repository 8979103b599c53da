"""Shared parts of the fuzz tests (``tests/security/test_fuzz_*.py``): hypothesis settings, the tally of
fuzzed inputs (checked against the 10,000 target in ``conftest.py``), real router/gateway processes,
allowed outcomes and process health (alive, SERVING, RSS).

Runs are derandomized (the same inputs every CI run: no flaky red from a lucky draw); set
``CASCADE_FUZZ_RANDOM=1`` for fresh random inputs and ``CASCADE_FUZZ_SCALE=10`` for ten times as many.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from hypothesis import HealthCheck, settings

_TESTS = Path(__file__).resolve().parents[1]
for _p in (_TESTS / "integration" / "router", _TESTS / "unit" / "router", _TESTS / "integration" / "stream"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from cascade_platform.procs import ServiceProcess, free_port, health_status  # noqa: E402
from router_fixture_registry import build_registry  # noqa: E402,F401  (re-exported)
from router_procs import HttpProcess, start_router  # noqa: E402,F401

# fuzzed requests + events per full run of tests/security/test_fuzz_*.py (issue 8 acceptance: 10,000);
# CASCADE_FUZZ_TARGET raises it, e.g. to see the session check fail
TARGET_TOTAL = max(10_000, int(os.environ.get("CASCADE_FUZZ_TARGET", "10000")))
TALLY: Counter[str] = Counter()  # category -> inputs actually executed (incremented by the tests)
SCALE = max(1, int(os.environ.get("CASCADE_FUZZ_SCALE", "1")))
RANDOM = os.environ.get("CASCADE_FUZZ_RANDOM", "") not in ("", "0", "false")

# Status codes RecommendationService documents (README "bad requests are INVALID_ARGUMENT naming the
# field", UNAVAILABLE when every candidate source failed, RESOURCE_EXHAUSTED for rate limits and
# messages over the 4 MiB receive limit). UNKNOWN and INTERNAL are bugs.
ALLOWED_CODES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
GRPC_MAX_RECEIVE = 4 * 1024 * 1024


def fuzz_settings(n: int) -> settings:
    """``n`` examples (times ``CASCADE_FUZZ_SCALE``), no per-example deadline (the box is shared)."""
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tree_rss_kib(pid: int) -> int:
    """RSS of ``pid`` plus its direct children (uvicorn may fork a worker)."""
    total = rss_kib(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for c in children:
        try:
            total += rss_kib(int(c))
        except (OSError, RuntimeError):
            pass
    return total


def assert_serving(proc: ServiceProcess) -> None:
    assert proc.proc is not None and proc.proc.poll() is None, f"{proc.name} died: {_tail(proc.log_path)}"
    status = "UNREACHABLE"
    for _ in range(30):  # a busy box may be slow to answer the first check
        status = health_status(proc.target, timeout_s=5)
        if status == "SERVING":
            return
        time.sleep(1)
    raise AssertionError(f"{proc.name} is {status} after fuzzing: {_tail(proc.log_path)}")


def assert_no_bug_logged(log_path: Path | None) -> None:
    """The platform interceptor logs every INTERNAL as ``rpc failed`` with a traceback."""
    text = log_path.read_text(errors="replace") if log_path and log_path.exists() else ""
    bad = [ln for ln in text.splitlines() if '"rpc failed"' in ln or "Traceback" in ln]
    assert not bad, "server logged a bug while fuzzed:\n" + "\n".join(b[:2000] for b in bad[:3])


def _tail(path: Path | None) -> str:
    return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""


def start_gateway(tmp: Path, router_target: str, **env: str) -> HttpProcess:
    """A real gateway (uvicorn) process; ``env`` adds e.g. the Kafka settings of ``/v1/events``."""
    port = free_port()
    log_path = tmp / f"gateway-{port}.log"
    full_env = {
        **os.environ,
        "CASCADE_PORT": str(port),
        "CASCADE_ROUTER_TARGET": router_target,
        "CASCADE_REQUEST_TIMEOUT_S": "30",
        "CASCADE_HEALTH_TIMEOUT_S": "5",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cascade_gateway"], env=full_env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    gw = HttpProcess(port, proc, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(gw.url + "/openapi.json", timeout=5):
                return gw
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    gw.stop()
    raise TimeoutError(f"gateway not answering on {gw.url}\n{_tail(log_path)}")


def http_post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


# -- cheap generation ---------------------------------------------------------------------------------
# Hypothesis pays per drawn choice (a 20 KiB st.binary() is 20,000 choices; on the shared 2-core box a
# choice costs ~0.1 ms). So hypothesis draws the *structure* -- which generator, which seed -- and the
# generator builds the value from ``random.Random(seed)``: two choices per field, still shrinkable
# (towards the first generator and seed 0) and reproducible from hypothesis' report.
_POOLS: dict[str, list[tuple[int, int]]] = {
    "ascii": [(0x20, 0x7E)],
    "control": [(0x00, 0x1F), (0x7F, 0x9F)],
    "bmp": [(0x20, 0xD7FF), (0xE000, 0xFFFD)],  # no surrogates
    "astral": [(0x10000, 0x10FFFF)],
    "any": [(0x00, 0xD7FF), (0xE000, 0x10FFFF)],
    "special": [(0x200B, 0x200F), (0x202A, 0x202E), (0xFEFF, 0xFEFF), (0x0300, 0x036F), (0x1F600, 0x1F64F)],
}
POOLS = tuple(_POOLS)


def rand_text(rng: random.Random, n: int, pool: str | None = None) -> str:
    """``n`` code points (never lone surrogates) from ``pool`` (a random one when None); long strings
    repeat a random 97-code-point block, so MiB-sized values cost no more than small ones."""
    ranges = _POOLS[pool or rng.choice(POOLS)]
    k = min(n, 97)
    block = "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(k))
    return block if n <= 97 else (block * (n // 97 + 1))[:n]


def pick(*gens: Callable[[random.Random], Any]):
    """A strategy: one of ``gens`` applied to ``random.Random(seed)`` (hypothesis draws index and seed)."""
    from hypothesis import strategies as st

    return st.builds(lambda i, seed: gens[i](random.Random(seed)), st.integers(0, len(gens) - 1),
                     st.integers(0, 2**32 - 1))


def choose(r: random.Random, gens: tuple[Callable[[random.Random], Any], ...]) -> Any:
    """The bulk-loop twin of :func:`pick`: a random one of ``gens`` applied to ``r``."""
    return r.choice(gens)(r)


def bulk(n: int, salt: str) -> Iterator[tuple[int, random.Random]]:
    """``n`` (seed, rng) pairs for a seeded bulk loop (``CASCADE_FUZZ_SCALE`` times as many);
    derandomized runs use seeds 0..n-1, random runs a fresh base. A failure message names the seed:
    ``random.Random(f"{salt}:{seed}")`` rebuilds the input."""
    base = random.SystemRandom().randrange(2**32) if RANDOM else 0
    for i in range(n * SCALE):
        seed = base + i
        yield seed, random.Random(f"{salt}:{seed}")
