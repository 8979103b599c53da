#!/usr/bin/env python
"""``make bench``: the full 4-hop stack, the co-located mode and a naive baseline, each driven open-loop
by h2load on the same request mix, plus physical floors — one run, one table of ratios.

Steps (every process real, loopback only, every loop bounded):

1. build or reuse the bench registry version (``bench_model``: 1M users x 1M items) under ``--root``;
2. start a dedicated redis-server and load the version's features in Feast's layout (``bench_redis``);
3. floors and stage work on the same inputs (``bench_floors``, child process);
4. for each mode (``4hop``: router + retrieval + features + ranking; ``colocated``; ``naive``): start it,
   check sample calls with a real gRPC client, find the maximum (closed loop), run open-loop load points
   at fractions of it, check again, optionally profile with py-spy, stop it;
5. the bare echo hop at the 4-hop 50 % request rate (``bench_echo``);
6. write ``<out>/latest.json`` and ``<out>/latest.md`` and print the Markdown.

Usage: ``.venv/bin/python scripts/bench/run_bench.py [--duration 20] [--modes 4hop,colocated,naive]``;
``--users/--items`` shrink the catalog for a quick smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import bench_h2load as h2  # noqa: E402
import bench_procstat as ps  # noqa: E402
import bench_prom as prom  # noqa: E402
from bench_frames import MIX, BenchRequest, request_mix, write_bodies  # noqa: E402
from bench_model import BENCH_DATA, BenchData, build  # noqa: E402
from bench_profile import hot_spots, parse_collapsed, start_record  # noqa: E402
from bench_redis import PROJECT, RedisServer, load_features  # noqa: E402
from bench_report import as_json, render, summarize  # noqa: E402

from cascade_platform.procs import ServiceProcess, free_port  # noqa: E402

RECOMMEND = "/cascade.router.v1.RecommendationService/Recommend"
# The echo hop again at a high rate: per-call gRPC CPU falls as calls share event-loop wakeups.
HIGH_ECHO_RPS = 800.0
THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Mode:
    name: str
    front: str  # the service label of the front process in cascade_grpc_server_handled_total
    procs: dict[str, ServiceProcess] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)  # process -> metrics port

    @property
    def front_proc(self) -> ServiceProcess:
        return self.procs[self.front]

    def pids(self, redis: RedisServer) -> dict[str, int]:
        out = {n: p.proc.pid for n, p in self.procs.items() if p.proc is not None}
        out["redis"] = redis.pid
        return out

    def stop(self) -> None:
        for p in reversed(list(self.procs.values())):
            p.stop()


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.root = Path(a.root).resolve()
        self.out = Path(a.out).resolve()
        self.work = self.out / "last-run"
        self.version = ""
        self.redis: RedisServer | None = None
        self.requests: list[BenchRequest] = []
        self.bodies: list[Path] = []
        self.checks: list[str] = []
        self.profiles: dict[str, list] = {}

    # -- set-up -------------------------------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        if self.work.exists():
            shutil.rmtree(self.work)
        (self.work / "logs").mkdir(parents=True)
        data = BenchData(n_users=self.a.users, n_items=self.a.items) if self.a.users else BENCH_DATA
        t0 = time.perf_counter()
        self.version = build(self.root, data)
        log(f"model {self.version} ready ({time.perf_counter() - t0:.0f}s)")
        t0 = time.perf_counter()
        self.redis = RedisServer(self.root / "redis", f"{self.version}.rdb").start()
        secs = load_features(self.redis, self.feast_registry, self.version_dir / "feast", self.version)
        log(f"redis-server pid {self.redis.pid} port {self.redis.port}: features "
            f"{'loaded in %.0fs' % secs if secs else 'reused'} ({time.perf_counter() - t0:.0f}s)")
        import pyarrow.parquet as pq

        users = json.loads((self.version_dir / "user_ids.json").read_text())
        items = pq.read_table(self.version_dir / "items.parquet", columns=["item_id"]).column("item_id").to_pylist()
        popular = [e["item_id"] for e in json.loads((self.version_dir / "popular.json").read_text())]
        self.requests = request_mix(users, items, popular, n_bodies=self.a.bodies, seed=self.a.seed)
        self.bodies = write_bodies(self.requests, self.work / "bodies")
        manifest = json.loads((self.version_dir / "manifest.json").read_text())
        return {"version": self.version, "n_users": manifest["n_users"], "n_items": manifest["n_items"],
                "dim": manifest["embedding_dim"], "ef_search": manifest["ann"]["ef_search"],
                "n_features": len(manifest["ranker"]["feature_names"]),
                "description": manifest["params"].get("bench_model", "")}

    @property
    def version_dir(self) -> Path:
        return self.root / "registry" / self.version

    @property
    def feast_registry(self) -> Path:
        return self.root / "feast" / f"{self.version}-registry.db"

    def base_env(self) -> dict[str, str]:
        assert self.redis is not None
        return {**THREAD_ENV, "CASCADE_ARTIFACTS_DIR": str(self.root), "CASCADE_MODEL_VERSION": self.version,
                "CASCADE_LOG_JSON": "true", "CASCADE_DATA_DIR": str(self.work / "data"),
                "CASCADE_ONLINE_STORE__TYPE": "redis", "CASCADE_ONLINE_STORE__PORT": str(self.redis.port),
                "CASCADE_FEAST_PROJECT": PROJECT, "CASCADE_NUM_CANDIDATES": str(self.a.candidates),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")]))}

    # -- floors ---------------------------------------------------------------------------------
    def floors(self) -> dict[str, Any]:
        assert self.redis is not None
        mix = self.work / "mix.json"
        mix.write_text(json.dumps([{"user_id": r.user_id, "exclude_item_ids": list(r.exclude_item_ids)}
                                   for r in self.requests]))
        out = self.work / "floors.json"
        cmd = [sys.executable, str(HERE / "bench_floors.py"), "--artifacts", str(self.root), "--version",
               self.version, "--redis-port", str(self.redis.port), "--redis-pid", str(self.redis.pid),
               "--project", PROJECT, "--feast-registry", str(self.feast_registry), "--mix", str(mix),
               "--candidates", str(self.a.candidates), "--calls", str(self.a.floor_calls),
               "--rounds", str(self.a.floor_rounds), "--json-out", str(out)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env={**os.environ, **self.base_env()}, capture_output=True, text=True,
                           timeout=1200)
        (self.work / "logs" / "floors.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"bench_floors failed:\n{r.stderr[-3000:]}")
        log(f"floors measured ({time.perf_counter() - t0:.0f}s)")
        return json.loads(out.read_text())

    # -- modes ----------------------------------------------------------------------------------
    def _proc(self, mode: Mode, name: str, module: str, extra: dict[str, str] | None = None) -> ServiceProcess:
        mport = free_port()
        env = {**self.base_env(), "CASCADE_METRICS_PORT": str(mport), **(extra or {})}
        p = ServiceProcess(name, module, free_port(), env=env, log_path=self.work / "logs" / f"{mode.name}-{name}.log")
        mode.procs[name] = p
        mode.metrics[name] = mport
        return p.start()

    def start_mode(self, name: str) -> Mode:
        t0 = time.perf_counter()
        if name == "4hop":
            mode = Mode(name, "router")
            down = [self._proc(mode, n, f"cascade_{n}") for n in ("ranking", "features", "retrieval")]
            for p in down:
                p.wait_serving(timeout_s=600)
            self._proc(mode, "router", "cascade_router", {
                "CASCADE_RETRIEVAL_TARGET": mode.procs["retrieval"].target,
                "CASCADE_FEATURES_TARGET": mode.procs["features"].target,
                "CASCADE_RANKING_TARGET": mode.procs["ranking"].target,
            }).wait_serving(timeout_s=600)
        elif name == "colocated":
            mode = Mode(name, "colocated")
            self._proc(mode, "colocated", "cascade_colocated").wait_serving(timeout_s=600)
        elif name == "naive":
            mode = Mode(name, "naive")
            self._proc(mode, "naive", "bench_naive", {
                "CASCADE_FEAST_REGISTRY_PATH": str(self.feast_registry)}).wait_serving(timeout_s=600)
        else:
            raise ValueError(f"unknown mode {name!r} (4hop, colocated, naive)")
        log(f"{name} serving ({time.perf_counter() - t0:.0f}s): "
            + ", ".join(f"{n} pid {p.proc.pid}" for n, p in mode.procs.items() if p.proc))
        return mode

    def sample_calls(self, mode: Mode, when: str) -> int:
        """Call every body once with a real gRPC client; record any error, degradation or bad answer."""
        import grpc
        from cascade.router.v1 import router_pb2_grpc

        bad = 0
        with grpc.insecure_channel(mode.front_proc.target) as ch:
            stub = router_pb2_grpc.RecommendationServiceStub(ch)
            for r in self.requests:
                problem = ""
                try:
                    resp = stub.Recommend(r.to_proto(), timeout=10)
                    ids = [i.item_id for i in resp.items]
                    if len(ids) != r.num_items:
                        problem = f"{len(ids)} items, asked {r.num_items}"
                    elif resp.degraded:
                        problem = "degraded=true"
                    elif set(ids) & set(r.exclude_item_ids):
                        problem = "returned an excluded item"
                    elif r.kind == "cold" and {i.source for i in resp.items} != {"popular"}:
                        problem = f"cold user got sources {sorted({i.source for i in resp.items})}"
                    elif r.kind != "cold" and "ann" not in {i.source for i in resp.items}:
                        problem = "known user got no ANN item"
                except grpc.RpcError as e:
                    problem = f"{e.code().name}: {e.details()}"
                if problem:
                    bad += 1
                    self.checks.append(f"{mode.name} {when}: {r.kind} user {r.user_id}: {problem}")
        self.checks.append(f"{mode.name} {when}: {len(self.requests) - bad}/{len(self.requests)} sample calls OK")
        return bad

    def idle_cpu(self, mode: Mode, seconds: float) -> dict[str, float]:
        """Cores each process burns with no traffic (timers, pollers, metrics threads): at low request
        rates this background cost is charged to few requests."""
        assert self.redis is not None
        pids = mode.pids(self.redis)
        a = ps.snapshot(pids, time.monotonic())
        time.sleep(seconds)
        d = ps.delta(a, ps.snapshot(pids, time.monotonic()))
        return {n: c / d.seconds for n, c in d.per_process.items()}

    def _scrape(self, mode: Mode) -> dict[str, dict]:
        return {n: prom.scrape(port) for n, port in mode.metrics.items()}

    def drive(self, mode: Mode, *, rate: float | None, duration: float, tag: str, bodies: list[Path] | None = None
              ) -> dict[str, Any]:
        """One h2load run (open loop at ``rate``, or closed loop when None), with CPU and metric deltas."""
        assert self.redis is not None
        bodies = bodies or self.bodies
        uri = f"http://{mode.front_proc.target}{RECOMMEND}"
        logs = [self.work / "logs" / f"h2load-{mode.name}-{tag}-{i:03d}.log" for i in range(len(bodies))]
        if rate is None:
            cmds = [h2.closed_loop_cmd(uri, b, duration, lg) for b, lg in zip(bodies, logs)]
        else:
            cmds = [h2.open_loop_cmd(uri, b, rate / len(bodies), duration, lg) for b, lg in zip(bodies, logs)]
        pids = mode.pids(self.redis)
        before = self._scrape(mode)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        snap0 = ps.snapshot(pids, time.monotonic())
        res = h2.run_parallel(cmds, logs, timeout_s=duration + 120, offsets=h2.stagger(len(cmds), rate))
        snap1 = ps.snapshot(pids, time.monotonic())
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = self._scrape(mode)
        cpu = ps.delta(snap0, snap1)
        front = prom.diff(before[mode.front], after[mode.front])
        codes = prom.codes(front, mode.front, "Recommend")
        handled = sum(codes.values())
        degraded = int(prom.total(front, "cascade_recommend_degraded_total"))
        recs = codes.get("OK", 0) - degraded
        loadgen = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        pct = h2.percentiles(res.latency_ms[res.status == 200])
        stages = {}
        for n in mode.procs:
            d = prom.diff(before[n], after[n])
            for key, (mean_s, count) in prom.hist_means(d, "cascade_stage_seconds").items():
                stages[key] = {"mean_ms": mean_s * 1e3, "count": count}
        return {
            "target_rps": rate, "achieved_rps": handled / cpu.seconds if cpu.seconds else 0.0,
            "window_s": cpu.seconds, "codes": codes, "degraded": degraded, "recs": recs,
            "h2load": {"requests": res.summary.total, "http_2xx": res.summary.status_2xx,
                       "http_other": res.summary.non_2xx, "errored": res.summary.errored,
                       "timeout": res.summary.timeout},
            "p50_ms": pct["p50"], "p99_ms": pct["p99"], "p99.9_ms": pct["p99.9"],
            "cpu_us_per_req": {n: s / max(1, handled) * 1e6 for n, s in cpu.per_process.items()},
            "cpu_s": cpu.per_process, "recs_per_core_s": recs / cpu.measured if cpu.measured else 0.0,
            "loadgen_cpu_s": loadgen, "other_busy_cores": max(0.0, cpu.other - loadgen) / cpu.seconds,
            "stage_mean_ms": stages,
        }

    def saturation_bodies(self) -> list[Path]:
        """``--saturation`` bodies spread evenly over the mix (bodies are grouped by class)."""
        k = min(self.a.saturation, len(self.bodies))
        return [self.bodies[i * len(self.bodies) // k] for i in range(k)]

    def run_mode(self, name: str, fractions: list[float]) -> dict[str, Any]:
        mode = self.start_mode(name)
        try:
            sat_bodies = self.saturation_bodies()
            self.drive(mode, rate=None, duration=self.a.warmup, tag="warmup", bodies=sat_bodies)
            self.sample_calls(mode, "before load")
            idle = self.idle_cpu(mode, self.a.idle)
            sat = self.drive(mode, rate=None, duration=self.a.max_duration, tag="max", bodies=sat_bodies)
            max_rps = sat["recs"] / sat["window_s"]
            log(f"{name}: max {max_rps:.0f} rps closed loop ({self.a.saturation} in flight; "
                f"p50 {sat['p50_ms']:.1f} ms, codes {sat['codes']}, degraded {sat['degraded']})")
            loads = []
            for f in fractions:
                r = self.drive(mode, rate=f * max_rps, duration=self.a.duration, tag=f"{int(f * 100)}pct")
                r["fraction"] = f
                loads.append(r)
                log(f"{name} {f:.0%}: {r['achieved_rps']:.0f} rps, p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} "
                    f"ms, {sum(r['cpu_us_per_req'].values()):.0f} CPU-µs/req, {r['recs_per_core_s']:.0f} "
                    f"recs/core-s, codes {r['codes']}, degraded {r['degraded']}")
            self.sample_calls(mode, "after load")
            if self.a.profile and name != "naive":
                self.profile(mode, 0.5 * max_rps)
            assert self.redis is not None
            return {"max_rps": max_rps, "max_run": sat, "loads": loads, "idle_cores": idle,
                    "processes": {n: round(ps.rss_mb(p), 1) for n, p in mode.pids(self.redis).items()}}
        finally:
            mode.stop()

    def profile(self, mode: Mode, rate: float) -> None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            self.checks.append("py-spy not installed: no profile (pip install -c constraints.txt py-spy)")
            return
        secs = min(10.0, self.a.duration)
        outs = {n: self.work / f"profile-{mode.name}-{n}.txt" for n in mode.procs}
        recs = {n: start_record(py_spy, p.proc.pid, secs, outs[n]) for n, p in mode.procs.items() if p.proc}
        self.drive(mode, rate=rate, duration=secs, tag="profile")
        for n, r in recs.items():
            try:
                r.wait(timeout=60)
            except subprocess.TimeoutExpired:
                r.kill()
            if outs[n].exists():
                spots = hot_spots(parse_collapsed(outs[n].read_text()))
                self.profiles[f"{mode.name}/{n} (cascade owner)"] = spots["cascade"]
                self.profiles[f"{mode.name}/{n} (leaf)"] = spots["self"]

    # -- echo floor -------------------------------------------------------------------------------
    def echo(self, rate: float, req_bytes: int, resp_bytes: int, duration: float) -> dict[str, Any]:
        port = free_port()
        env = {**os.environ, **THREAD_ENV}
        server = subprocess.Popen([sys.executable, str(HERE / "bench_echo.py"), "serve", "--port", str(port),
                                   "--resp-bytes", str(resp_bytes)], stdout=subprocess.PIPE, text=True, env=env)
        client = None
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError("echo server did not start")
            client = subprocess.Popen(
                [sys.executable, str(HERE / "bench_echo.py"), "drive", "--target", f"127.0.0.1:{port}",
                 "--rate", f"{rate:.3f}", "--duration", f"{duration:g}", "--req-bytes", str(req_bytes)],
                stdout=subprocess.PIPE, text=True, env=env)
            assert client.stdout is not None
            pids = {"client": client.pid, "server": server.pid}
            if json.loads(client.stdout.readline())["event"] != "start":
                raise RuntimeError("echo client did not start")
            s0 = ps.snapshot(pids, time.monotonic())
            done = json.loads(client.stdout.readline())
            s1 = ps.snapshot(pids, time.monotonic())
            client.wait(timeout=30)
        finally:
            for p in (client, server):
                if p is not None and p.poll() is None:
                    p.terminate()
                    p.wait(10)
        d = ps.delta(s0, s1)
        calls = max(1, done["calls"])
        c_us, s_us = d.per_process["client"] / calls * 1e6, d.per_process["server"] / calls * 1e6
        return {"rate": rate, "calls": done["calls"], "errors": done["errors"], "req_bytes": req_bytes,
                "resp_bytes": resp_bytes, "client_cpu_us": c_us, "server_cpu_us": s_us,
                "total_cpu_us": c_us + s_us, "p50_us": done["p50_ms"] * 1e3, "p99_us": done["p99_ms"] * 1e3}

    # -- everything -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
        try:
            model = self.prepare()
            floors = self.floors()
            fractions = [float(x) for x in self.a.loads.split(",")]
            modes: dict[str, Any] = {}
            for name in self.a.modes.split(","):
                fr = fractions if name != "naive" else [0.5]
                modes[name] = self.run_mode(name, fr)
            mb = floors["message_bytes"]
            req = int((mb["retrieve_req"] + mb["features_req"] + mb["rank_req"]) / 3)
            resp = int((mb["retrieve_resp"] + mb["features_resp"] + mb["rank_resp"]) / 3)
            rate = 0.5 * modes.get("4hop", next(iter(modes.values())))["max_rps"]
            echo = self.echo(rate, req, resp, self.a.duration)
            echo["at_high_rate"] = self.echo(HIGH_ECHO_RPS, req, resp, min(5.0, self.a.duration))
            log(f"echo floor at {rate:.0f} rps, {req}/{resp} B: {echo['total_cpu_us']:.0f} CPU-µs/call; at "
                f"{HIGH_ECHO_RPS:g} rps: {echo['at_high_rate']['total_cpu_us']:.0f}")
        finally:
            if self.redis is not None:
                self.redis.stop()
        return {
            "started_at": started,
            "machine": {"nproc": os.cpu_count(), "cpu_model": cpu_model(), "loadavg_start": load0,
                        "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                        "python": platform.python_version()},
            "params": {"candidates": self.a.candidates, "bodies": len(self.bodies), "duration_s": self.a.duration,
                       "loads": self.a.loads, "saturation_in_flight": self.a.saturation,
                       "mix": ", ".join(f"{k} {w:.0%}" for k, w in MIX)},
            "model": model, "floors": floors, "modes": modes, "echo": echo, "checks": self.checks,
            "profiles": self.profiles,
        }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(ROOT / "artifacts" / "bench"), help="bench registry + Redis cache")
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    ap.add_argument("--modes", default="4hop,colocated,naive")
    ap.add_argument("--loads", default="0.25,0.5,0.75", help="fractions of the measured maximum")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per load point")
    ap.add_argument("--max-duration", type=float, default=10.0, help="seconds of the closed-loop maximum run")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of no traffic to measure background CPU")
    ap.add_argument("--saturation", type=int, default=8, help="requests in flight while finding the maximum")
    ap.add_argument("--bodies", type=int, default=24, help="distinct requests in the mix (one h2load each)")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--floor-calls", type=int, default=480)
    ap.add_argument("--floor-rounds", type=int, default=3)
    ap.add_argument("--users", type=int, default=0, help="smaller catalog for a smoke run (0 = 1M)")
    ap.add_argument("--items", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--render", metavar="JSON", help="only re-render the report of a stored latest.json")
    a = ap.parse_args(argv)
    if a.render:
        run = json.loads(Path(a.render).read_text())["run"]
        return write_report(run, Path(a.out))
    if bool(a.users) != bool(a.items):
        ap.error("--users and --items go together")
    if not shutil.which("h2load"):
        ap.error("h2load not found: apt-get install -y nghttp2-client")
    return write_report(Bench(a).run(), Path(a.out))


def write_report(run: dict[str, Any], out: Path) -> int:
    summary = summarize(run)
    out.mkdir(parents=True, exist_ok=True)
    md = render(run, summary)
    (out / "latest.json").write_text(json.dumps(as_json(summary, run), indent=1, default=float))
    (out / "latest.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
