#!/usr/bin/env python
"""Feature-fetch latency for one ranking request: Feast SDK vs Cascade's fast readers.

For each online store (SQLite, Redis at 127.0.0.1:6379) the script materializes seeded synthetic
tables with Feast (MovieLens-100k-like sizes and the real layout width), then times, per request
(one user + N candidates, ~5% unknown items):

* ``feast sdk``      — ``FeatureStore.get_online_features(feature_service=ranker_v1, ...)``;
* ``fast reader``    — ``OnlineReader.fetch`` (one store round trip, bulk decode), the hot path;
* ``fast + assemble``— fetch + defaults + ``FeatureLayout.assemble`` (what GetFeatures does).

Prints a table of p50 / p99 / mean in milliseconds. Numbers depend on machine load: compare rows
of one run, not runs on different machines.

    .venv/bin/python scripts/bench_features.py [--candidates 100] [--iters 500] [--stores sqlite,redis]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import redis

from cascade_core.features import FeatureLayout
from cascade_features.config import FeastSettings, RedisStoreConfig, SqliteStoreConfig, feast_repo_config
from cascade_features.definitions import DEFAULT_FEATURE_SERVICE
from cascade_features.hydrator import FeatureDefaults, assemble
from cascade_features.repo import apply_and_materialize
from cascade_features.stores import make_reader
from cascade_features.synthetic import write_feature_tables

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western")


def requests(n: int, users: list[str], items: list[str], k: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids = [items[j] for j in rng.choice(len(items), size=k, replace=False)]
        for j in rng.choice(k, size=max(1, k // 20), replace=False):
            ids[j] = f"unknown-{j}"
        out.append((users[int(rng.integers(len(users)))], ids))
    return out


def stats(samples: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(samples) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(statistics.fmean(ms))


def bench_sdk(fs, reqs, warmup: int) -> list[float]:
    service = fs.get_feature_service(DEFAULT_FEATURE_SERVICE)
    out = []
    for n, (u, ids) in enumerate(reqs):
        t0 = time.perf_counter()
        fs.get_online_features(features=service, entity_rows=[{"user_id": u, "item_id": i} for i in ids]).to_dict()
        if n >= warmup:
            out.append(time.perf_counter() - t0)
    return out


async def bench_fast(reader, defaults: FeatureDefaults | None, reqs, warmup: int) -> list[float]:
    await reader.initialize()
    out = []
    try:
        for n, (u, ids) in enumerate(reqs):
            t0 = time.perf_counter()
            fetched = await reader.fetch(u, ids)
            if defaults is not None:
                assemble(defaults, fetched, None)
            if n >= warmup:
                out.append(time.perf_counter() - t0)
    finally:
        await reader.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--users", type=int, default=943)
    p.add_argument("--items", type=int, default=1682)
    p.add_argument("--stores", default="sqlite,redis")
    a = p.parse_args()
    layout = FeatureLayout(GENRES)
    defaults = FeatureDefaults(layout, np.zeros(layout.user_dim, np.float32), np.zeros(layout.item_dim, np.float32))
    rows: list[tuple[str, str, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        root = Path(tmp)
        t = write_feature_tables(root / "tables", n_users=a.users, n_items=a.items, user_dim=layout.user_dim,
                                 item_dim=layout.item_dim, seed=0)
        reqs = requests(a.iters + a.warmup, t.user_ids, t.item_ids, a.candidates, seed=1)
        for store in a.stores.split(","):
            project = f"bench_{uuid.uuid4().hex[:8]}"
            cfg = (SqliteStoreConfig(path=str(root / "online.db")) if store == "sqlite"
                   else RedisStoreConfig() if store == "redis" else None)
            if cfg is None:
                p.error(f"--stores: unknown store {store!r} (sqlite, redis)")
            settings = FeastSettings(project=project, registry_path=str(root / "registry.db"), online_store=cfg)
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # Feast prints progress
                    apply_and_materialize("bench", cfg, project=project, registry_path=settings.registry_path,
                                          source_dir=root / "tables")
                from feast import FeatureStore

                fs = FeatureStore(config=feast_repo_config(settings))
                reader = lambda: make_reader(cfg, project, layout.user_dim, layout.item_dim)  # noqa: E731
                rows.append((store, "feast sdk get_online_features", *stats(bench_sdk(fs, reqs, a.warmup))))
                rows.append((store, "fast reader fetch",
                             *stats(asyncio.run(bench_fast(reader(), None, reqs, a.warmup)))))
                rows.append((store, "fast reader + assemble",
                             *stats(asyncio.run(bench_fast(reader(), defaults, reqs, a.warmup)))))
            finally:
                if store == "redis":
                    r = redis.Redis()
                    keys = list(r.scan_iter(match=b"*" + project.encode(), count=1000))
                    if keys:
                        r.delete(*keys)
    print(f"\nfeature fetch for 1 user + {a.candidates} candidates (~5% unknown), {a.iters} requests, "
          f"{a.users} users x {a.items} items, vectors {layout.user_dim}/{layout.item_dim} floats, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"| {'store':<6} | {'path':<30} | {'p50 ms':>7} | {'p99 ms':>7} | {'mean ms':>7} | {'p50 vs sdk':>10} |")
    print(f"|{'-' * 8}|{'-' * 32}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 12}|")
    sdk_p50 = {s: p50 for s, path, p50, _, _ in rows if path.startswith("feast")}
    for s, path, p50, p99, mean in rows:
        print(f"| {s:<6} | {path:<30} | {p50:7.3f} | {p99:7.3f} | {mean:7.3f} | {sdk_p50[s] / p50:9.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
