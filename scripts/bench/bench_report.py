"""Ratio math, targets, capacity plan and the Markdown/JSON report of one bench run (pure functions).

Definitions (also in docs/performance.md):

* one *recommendation* = one successful, non-degraded ``Recommend`` response (a ranked list);
* *recs per core-second* = recommendations / CPU seconds of every process of the mode (Redis included)
  over the same window, at the 50 % load point;
* *stage ratio* = CPU-µs per call of the service's own stage work / CPU-µs per call of its floor on
  the same inputs (Redis server CPU included on both sides for features);
* *hop ratio* = CPU-µs per RPC hop / CPU-µs per bare echo call (client + server processes), where a
  hop's cost is ``(4-hop CPU/req - co-located CPU/req) / 3``, averaged over the load fractions both
  modes ran: the co-located mode runs the same stage code with the three internal hops replaced by
  function calls, at the same fraction of its own maximum.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

TARGET_RPS = 10_000
UTILISATION = 0.60
TRITON_REPLICA_CORES = 4
INTERNAL_HOPS = 3
# CPU-µs of one Python gRPC hop measured before on this machine class when quiet (issue 7).
REFERENCE_HOP_US = (240, 450)


@dataclass(frozen=True)
class Target:
    name: str
    measured: float
    threshold: float
    op: str  # ">=" or "<="
    unit: str = ""

    @property
    def met(self) -> bool:
        if self.measured is None or math.isnan(self.measured):
            return False
        return self.measured >= self.threshold if self.op == ">=" else self.measured <= self.threshold


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is zero or either side is missing."""
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def recs_per_core_s(recs: int, cpu_seconds: float) -> float:
    return ratio(float(recs), cpu_seconds)


def pick_load(loads: Sequence[Mapping[str, Any]], fraction: float) -> Mapping[str, Any] | None:
    """The load point closest to ``fraction`` of the maximum."""
    if not loads:
        return None
    return min(loads, key=lambda x: abs(x["fraction"] - fraction))


def hop_cpu_us(cpu_4hop_us: float, cpu_colocated_us: float, hops: int = INTERNAL_HOPS) -> float:
    """CPU-µs one internal RPC hop adds: the 4-hop minus co-located per-request CPU, per hop."""
    return ratio(cpu_4hop_us - cpu_colocated_us, float(hops))


def matched_hop_cpu_us(loads_4hop: Sequence[Mapping[str, Any]], loads_colocated: Sequence[Mapping[str, Any]],
                       hops: int = INTERNAL_HOPS) -> float:
    """:func:`hop_cpu_us` averaged over the load fractions both modes ran: a difference of two large,
    noisy numbers, so every matched pair of load points is used, not just the 50 % one."""
    colo = {round(x["fraction"], 3): load_total_cpu_us(x) for x in loads_colocated}
    diffs = [hop_cpu_us(load_total_cpu_us(x), colo[round(x["fraction"], 3)], hops)
             for x in loads_4hop if round(x["fraction"], 3) in colo]
    return sum(diffs) / len(diffs) if diffs else math.nan


def stage_ratios(ops: Mapping[str, Mapping[str, float]], hop_us: float, echo_us: float) -> dict[str, float]:
    """features / ranking / retrieval / hop cost ratios vs their floors, and the Feast speed-up."""
    return {
        "features": ratio(ops["features_stage"]["total_cpu_us"], ops["redis_floor"]["total_cpu_us"]),
        "ranking": ratio(ops["ranking_stage"]["cpu_us"], ops["onnx_floor"]["cpu_us"]),
        "retrieval": ratio(ops["retrieval_stage"]["cpu_us"], ops["ann_floor"]["cpu_us"]),
        "hop": ratio(hop_us, echo_us),
        "features_vs_feast_sdk_speedup": ratio(ops["feast_sdk"]["p50_us"], ops["features_stage"]["p50_us"]),
    }


def targets(r: Mapping[str, Any]) -> list[Target]:
    """Every target of issue 7 from the summary numbers of one run (see :func:`summarize`)."""
    sr = r["stage_ratio"]
    return [
        Target("4-hop recs per core-second (all processes, Redis incl.)", r["recs_per_core_s_4hop"], 500, ">="),
        Target("4-hop p99 at 50% load", r["p99_ms_at_50pct"], 25, "<=", " ms"),
        Target("4-hop vs naive baseline, recs per core-second", r["speedup_vs_baseline"], 8, ">=", "x"),
        Target("co-located recs per core-second", r["recs_per_core_s_colocated"], 1000, ">="),
        Target("features stage / raw online-store read (CPU)", sr["features"], 1.5, "<=", "x"),
        Target("features stage vs Feast SDK (p50 speed-up)", sr["features_vs_feast_sdk_speedup"], 4, ">=", "x"),
        Target("ranking stage / bare onnxruntime (CPU)", sr["ranking"], 1.3, "<=", "x"),
        Target("retrieval stage / bare hnswlib (CPU)", sr["retrieval"], 1.5, "<=", "x"),
        Target("ANN recall@100 vs exact at served ef", r["ann_recall_at_100"], 0.95, ">="),
        Target("RPC hop / bare gRPC echo hop (CPU)", sr["hop"], 1.2, "<=", "x"),
    ]


def ceilings(ops: Mapping[str, Mapping[str, float]], echo: Mapping[str, float]) -> dict[str, float]:
    """Recs per core-second each mode would reach if Cascade added nothing to the physical floors.

    4-hop: the front hop's server side (the load generator's client side is not counted), three internal
    echo hops (client + server), the bare ANN query (0 for cold users, averaged over the mix), the raw
    Redis read (client + server) and bare onnxruntime. Co-located: the same without the internal hops.
    A target above its ceiling cannot be met by any change to Cascade's code on this machine; only fewer
    hops, a cheaper RPC stack or cheaper floors (index, model) move it.
    """
    work = ops["ann_floor"]["total_cpu_us"] + ops["redis_floor"]["total_cpu_us"] + ops["onnx_floor"]["total_cpu_us"]
    front = echo.get("server_cpu_us", math.nan)
    hop = echo.get("total_cpu_us", math.nan)
    return {
        "4hop": 1e6 / (front + INTERNAL_HOPS * hop + work),
        "colocated": 1e6 / (front + work),
    }


def load_total_cpu_us(load: Mapping[str, Any]) -> float:
    return sum(load["cpu_us_per_req"].values())


def summarize(run: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of ``latest.json`` from the raw run record."""
    modes = run["modes"]
    at50 = {m: pick_load(v["loads"], 0.5) for m, v in modes.items()}
    rpcs = {m: (l_["recs_per_core_s"] if l_ else math.nan) for m, l_ in at50.items()}
    cpu = {m: (load_total_cpu_us(l_) if l_ else math.nan) for m, l_ in at50.items()}
    hop = (matched_hop_cpu_us(modes["4hop"]["loads"], modes["colocated"]["loads"])
           if "4hop" in modes and "colocated" in modes else math.nan)
    echo = run.get("echo", {}).get("total_cpu_us", math.nan)
    ops = run["floors"]["ops"]
    sr = stage_ratios(ops, hop, echo)
    l4 = at50.get("4hop") or {}
    return {
        "recs_per_core_s_4hop": rpcs.get("4hop", math.nan),
        "recs_per_core_s_colocated": rpcs.get("colocated", math.nan),
        "recs_per_core_s_baseline": rpcs.get("naive", math.nan),
        "speedup_vs_baseline": ratio(rpcs.get("4hop", math.nan), rpcs.get("naive", math.nan)),
        "colocated_speedup_vs_baseline": ratio(rpcs.get("colocated", math.nan), rpcs.get("naive", math.nan)),
        "recs_per_core_s_at_max": {m: (v.get("max_run") or {}).get("recs_per_core_s", math.nan)
                                   for m, v in modes.items()},
        "p50_ms_at_50pct": l4.get("p50_ms", math.nan),
        "p99_ms_at_50pct": l4.get("p99_ms", math.nan),
        "p999_ms_at_50pct": l4.get("p99.9_ms", math.nan),
        "max_rps": {m: v["max_rps"] for m, v in modes.items()},
        "cpu_us_per_req_at_50pct": cpu,
        "hop_cpu_us": hop,
        "echo_cpu_us": echo,
        "stage_ratio": sr,
        "ceiling_recs_per_core_s": ceilings(ops, run.get("echo", {})),
        "ann_recall_at_100": run["floors"]["ann"]["recall_at_100"],
    }


def capacity_plan(run: Mapping[str, Any], rps: float = TARGET_RPS, util: float = UTILISATION) -> list[dict]:
    """Cores per process at ``util`` for ``rps``, from the 4-hop 50 % point's CPU-µs per request.

    Redis is single-threaded: shards = cores needed (each shard on one core at ``util``). Triton
    replicas (``TRITON_REPLICA_CORES`` cores each) are sized for the ranker's bare compute per request
    (the onnxruntime floor over the same rows) plus one server-side echo hop.
    """
    l4 = pick_load(run["modes"]["4hop"]["loads"], 0.5)
    rows = []
    for proc, us in (l4 or {}).get("cpu_us_per_req", {}).items():
        cores = rps * us / 1e6 / util
        rows.append({"component": proc, "cpu_us_per_req": us, "cores": cores,
                     "units": math.ceil(cores) if cores > 0 else 0,
                     "unit": "shards" if proc == "redis" else "cores"})
    ops = run["floors"]["ops"]
    triton_us = ops["onnx_floor"]["cpu_us"] + run.get("echo", {}).get("server_cpu_us", 0.0)
    triton_cores = rps * triton_us / 1e6 / util
    rows.append({"component": "triton (ranker compute + 1 server hop)", "cpu_us_per_req": triton_us,
                 "cores": triton_cores, "units": max(1, math.ceil(triton_cores / TRITON_REPLICA_CORES)),
                 "unit": f"replicas x {TRITON_REPLICA_CORES} cores"})
    return rows


def _f(x: float | None, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{nd}f}"


def render(run: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """The Markdown report: machine, load tables, CPU per process, floors, targets, capacity plan."""
    m = run["machine"]
    echo = run.get("echo", {})
    high = echo.get("at_high_rate", {})
    out = [f"# Cascade bench — {run['started_at']}", "",
           f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), load average {m['loadavg_start']} at start, "
           f"{m['loadavg_end']} at end. Model: `{run['model']['version']}` "
           f"({run['model']['n_users']:,} users x {run['model']['n_items']:,} items, dim {run['model']['dim']}, "
           f"ef_search {run['model']['ef_search']}, ranker {run['model']['n_features']} features), "
           f"{run['params']['candidates']} candidates, {run['params']['bodies']} distinct request bodies "
           f"(mix {run['params']['mix']}), {run['params']['duration_s']:g} s per load point.", "",
           f"Machine speed check: one bare Python gRPC hop (echo, client + server) cost "
           f"{_f(echo.get('total_cpu_us'), 0)} CPU-µs at {_f(echo.get('rate'), 0)} calls/s and "
           f"{_f(high.get('total_cpu_us'), 0)} CPU-µs at {_f(high.get('rate'), 0)} calls/s here, against "
           f"{REFERENCE_HOP_US[0]}-{REFERENCE_HOP_US[1]} µs measured earlier on this machine class "
           f"({_f(ratio(echo.get('total_cpu_us', math.nan), sum(REFERENCE_HOP_US) / 2), 1)}x the midpoint): "
           "absolute CPU figures scale with the machine and the request rate; the ratios (stage/floor, "
           "mode/mode) are what carries over.", ""]
    naive = summary["recs_per_core_s_baseline"]
    out += ["## Load points (open loop, h2load)", "",
            "| mode | load | target rps | achieved rps | OK | non-OK | degraded | p50 ms | p99 ms | p99.9 ms "
            "| CPU-µs/req | recs/core-s | vs naive | other busy cores |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, mode in run["modes"].items():
        mx = mode.get("max_run") or {}
        mx_cpu = load_total_cpu_us(mx) if mx.get("cpu_us_per_req") else math.nan
        out.append(f"| {name} | max (closed loop, {run['params'].get('saturation_in_flight', '?')} in flight) "
                   f"| - | {_f(mode['max_rps'])} | {mx.get('codes', {}).get('OK', '')} | | {mx.get('degraded', '')} "
                   f"| {_f(mx.get('p50_ms'), 2)} | {_f(mx.get('p99_ms'), 2)} | {_f(mx.get('p99.9_ms'), 2)} "
                   f"| {_f(mx_cpu, 0)} | {_f(mx.get('recs_per_core_s'), 0)} "
                   f"| {_f(ratio(mx.get('recs_per_core_s', math.nan), naive), 1)}x | {_f(mx.get('other_busy_cores'), 2)} |")
        for l_ in mode["loads"]:
            bad = sum(v for k, v in l_["codes"].items() if k != "OK")
            out.append(
                f"| {name} | {l_['fraction']:.0%} | {_f(l_['target_rps'])} | {_f(l_['achieved_rps'])} "
                f"| {l_['codes'].get('OK', 0)} | {bad} | {l_['degraded']} | {_f(l_['p50_ms'], 2)} "
                f"| {_f(l_['p99_ms'], 2)} | {_f(l_['p99.9_ms'], 2)} | {_f(load_total_cpu_us(l_), 0)} "
                f"| {_f(l_['recs_per_core_s'], 0)} | {_f(ratio(l_['recs_per_core_s'], naive), 1)}x "
                f"| {_f(l_['other_busy_cores'], 2)} |")
    out += ["", "## CPU-µs per request by process", ""]
    for name, mode in run["modes"].items():
        procs = list(mode["loads"][0]["cpu_us_per_req"]) if mode["loads"] else []
        out += [f"**{name}**", "", "| load | " + " | ".join(procs) + " | total |",
                "|---|" + "---|" * (len(procs) + 1)]
        for l_ in mode["loads"]:
            c = l_["cpu_us_per_req"]
            out.append(f"| {l_['fraction']:.0%} | " + " | ".join(_f(c[p], 0) for p in procs)
                       + f" | {_f(load_total_cpu_us(l_), 0)} |")
        if mode.get("idle_cores"):
            idle = mode["idle_cores"]
            out.append("| idle (cores, no traffic) | " + " | ".join(_f(idle.get(p), 3) for p in procs)
                       + f" | {_f(sum(idle.values()), 3)} |")
        out.append("")
    out += ["## Stage latency at 50% load (mean of `cascade_stage_seconds`, ms)", "",
            "| mode | " + " | ".join(run["modes"]) + " |", "|---|" + "---|" * len(run["modes"])]
    means = {m: (pick_load(v["loads"], 0.5) or {}).get("stage_mean_ms", {}) for m, v in run["modes"].items()}
    for key in sorted({k for v in means.values() for k in v}):
        out.append(f"| {key} | " + " | ".join(
            _f(means[m][key]["mean_ms"], 3) if key in means[m] else "" for m in run["modes"]) + " |")
    out.append("")
    ops = run["floors"]["ops"]
    pairs = [("retrieval_stage", "ann_floor"), ("ann_floor", None), ("features_stage", "redis_floor"),
             ("redis_floor", None), ("feast_sdk", "redis_floor"), ("ranking_stage", "onnx_floor"),
             ("onnx_floor", None)]
    out += ["## Stages vs physical floors (same inputs, one process, interleaved)", "",
            f"Rows per ranker call {run['floors']['rows']:.0f} x {run['floors']['cols']} features; mean ANN k "
            f"{run['floors']['ann']['mean_k']:.0f} (known users); recall@100 vs exact "
            f"{run['floors']['ann']['recall_at_100']:.3f} at ef {run['floors']['ann']['ef_search']}.", "",
            "| operation | CPU-µs/call | Redis CPU-µs | total CPU-µs | p50 µs | vs floor (CPU) |",
            "|---|---|---|---|---|---|"]
    for op, floor in pairs:
        o = ops[op]
        vs = _f(ratio(o["total_cpu_us"], ops[floor]["total_cpu_us"]), 2) + "x" if floor else "floor"
        out.append(f"| {op} | {_f(o['cpu_us'])} | {_f(o['redis_cpu_us'])} | {_f(o['total_cpu_us'])} "
                   f"| {_f(o['p50_us'])} | {vs} |")
    e = run.get("echo", {})
    out += [f"| rpc hop ((4-hop - co-located) / 3, mean over load points) | {_f(summary['hop_cpu_us'])} | | "
            f"{_f(summary['hop_cpu_us'])} | | {_f(summary['stage_ratio']['hop'], 2)}x |",
            f"| echo hop floor (client {_f(e.get('client_cpu_us'))} + server {_f(e.get('server_cpu_us'))}) "
            f"| {_f(e.get('total_cpu_us'))} | | {_f(e.get('total_cpu_us'))} | {_f(e.get('p50_us'))} | floor |", ""]
    out += ["## Targets", "", "| target | measured | threshold | met |", "|---|---|---|---|"]
    for t in targets(summary):
        out.append(f"| {t.name} | {_f(t.measured, 2)}{t.unit} | {t.op} {t.threshold:g}{t.unit} "
                   f"| {'met' if t.met else '**unmet**'} |")
    ceil = summary.get("ceiling_recs_per_core_s") or {}
    if ceil:
        out += ["", "Ceilings — recs per core-second with zero Cascade overhead over this run's floors (front "
                "hop server side + 3 echo hops + ANN + raw Redis read + onnxruntime; co-located without the "
                f"3 hops): 4-hop {_f(ceil.get('4hop'), 0)} (measured {_f(summary['recs_per_core_s_4hop'], 0)}, "
                f"{_f(100 * ratio(summary['recs_per_core_s_4hop'], ceil.get('4hop', math.nan)), 0)} % of it), "
                f"co-located {_f(ceil.get('colocated'), 0)} (measured {_f(summary['recs_per_core_s_colocated'], 0)}, "
                f"{_f(100 * ratio(summary['recs_per_core_s_colocated'], ceil.get('colocated', math.nan)), 0)} % of it)."]
    out += ["", f"## Capacity plan for {TARGET_RPS:,} RPS at {UTILISATION:.0%} CPU utilisation", "",
            "From the 4-hop 50% point's CPU-µs per request: cores = RPS x CPU-s/req / utilisation.", "",
            "| component | CPU-µs/req | cores | provision |", "|---|---|---|---|"]
    for row in capacity_plan(run):
        out.append(f"| {row['component']} | {_f(row['cpu_us_per_req'], 0)} | {_f(row['cores'], 1)} "
                   f"| {row['units']} {row['unit']} |")
    if run.get("checks"):
        out += ["", "## Correctness checks", ""] + [f"- {c}" for c in run["checks"]]
    if run.get("profiles"):
        out += ["", "## Hot spots (py-spy, 50% load, own CPU samples)", ""]
        for proc, rows in run["profiles"].items():
            out += [f"**{proc}**", "", "| share | function (file:line) |", "|---|---|"]
            out += [f"| {share:.1%} | `{frame}` |" for frame, share in rows]
            out.append("")
    return "\n".join(out) + "\n"


def as_json(summary: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    return {**summary, "targets": [{**asdict(t), "met": t.met} for t in targets(summary)],
            "capacity_plan": capacity_plan(run), "run": run}
