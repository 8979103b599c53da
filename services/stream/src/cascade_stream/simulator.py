"""Traffic simulator: live user events at a given rate, for demos, tests and benchmarks.

    python -m cascade_stream.simulator synthetic --rate 2000 --duration 60
    python -m cascade_stream.simulator replay --dataset ml-latest-small --rate 500 --count 20000
    python -m cascade_stream.simulator focus --user 7 --category Comedy --count 8

Modes (each a generator of event templates; the runner stamps ``event_id`` and ``timestamp`` = send
time, so every event is live):

``synthetic``  sessions of random users ("1".."N") over the catalog: impressions, some views, fewer
               clicks, add-to-carts and purchases; each user prefers a few categories;
``replay``     the dataset's interactions in time order (``cascade_pipelines.data``; MovieLens users
               are "1".."671"): a view per rating, a click from 3.5, add-to-cart from 4.5, a purchase at 5;
``focus``      "user U clicks items of category C": a view and a click on each of ``count`` items of C.

The catalog is the registry's ``items.parquet`` (``item_id``, ``category``) or ``--items PATH``.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping


@dataclass(frozen=True, slots=True)
class Template:
    event_type: str
    user_id: str
    item_id: str
    request_id: str | None = None


class Pacer:
    """Spreads sends evenly at ``rate`` per second (``None``: as fast as possible)."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.start = time.perf_counter()
        self.sent = 0

    def wait(self) -> None:
        self.sent += 1
        if self.rate is None:
            return
        ahead = self.sent / self.rate - (time.perf_counter() - self.start)
        if ahead > 0.002:
            time.sleep(ahead)


def by_category(catalog: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item, cat in catalog.items():
        out.setdefault(cat, []).append(item)
    return out


class ZipfSampler:
    """Items drawn with probability proportional to ``1 / rank ** exponent`` (a seeded popularity order):
    storefront traffic concentrates on popular items, as MovieLens ratings do."""

    def __init__(self, items: list[str], rng: random.Random, exponent: float = 1.0) -> None:
        self.items = items[:]
        rng.shuffle(self.items)
        self.rng = rng
        self.cum = list(itertools.accumulate(1.0 / (r + 1) ** exponent for r in range(len(self.items))))

    def __call__(self) -> str:
        return self.items[bisect.bisect_left(self.cum, self.rng.random() * self.cum[-1])]


def synthetic(
    catalog: Mapping[str, str], n_users: int = 671, seed: int = 0, zipf_exponent: float = 1.0
) -> Iterator[Template]:
    """Endless sessions: per user a category preference, a page of impressions, then a funnel.

    Items are popularity-skewed (:class:`ZipfSampler`); 60% of a page comes from the user's two
    preferred categories.
    """
    if not catalog:
        raise ValueError("synthetic traffic needs a non-empty catalog")
    rng = random.Random(seed)
    cats = by_category(catalog)
    names = sorted(cats)
    overall = ZipfSampler(sorted(catalog), rng, zipf_exponent)
    per_cat = {c: ZipfSampler(sorted(ids), rng, zipf_exponent) for c, ids in cats.items()}
    prefs: dict[str, list[str]] = {}
    while True:
        user = str(rng.randint(1, n_users))
        liked = prefs.setdefault(user, rng.sample(names, k=min(2, len(names))))
        request_id = f"req-{uuid.UUID(int=rng.getrandbits(128))}"
        page = [per_cat[rng.choice(liked)]() if rng.random() < 0.6 else overall() for _ in range(6)]
        for item in page:
            yield Template("impression", user, item, request_id)
        for item in page:
            if rng.random() < 0.35:
                yield Template("view", user, item, request_id)
                if rng.random() < 0.5:
                    yield Template("click", user, item, request_id)
                    if rng.random() < 0.25:
                        yield Template("add_to_cart", user, item, request_id)
                        if rng.random() < 0.5:
                            yield Template("purchase", user, item, request_id)


def replay(interactions: Any) -> Iterator[Template]:
    """Interactions (``user_id``, ``item_id``, ``timestamp``, optional ``rating``) in time order."""
    df = interactions.sort_values("timestamp", kind="stable")
    ratings = df["rating"] if "rating" in df.columns else itertools.repeat(float("nan"))
    for user, item, rating in zip(df["user_id"].astype(str), df["item_id"].astype(str), ratings):
        yield Template("view", user, item)
        r = float(rating)
        if math.isnan(r) or r >= 3.5:  # implicit feedback (NaN) counts as a click
            yield Template("click", user, item)
        if r >= 4.5:
            yield Template("add_to_cart", user, item)
        if r >= 5.0:
            yield Template("purchase", user, item)


def focus(
    catalog: Mapping[str, str], user_id: str, category: str, count: int, seed: int = 0
) -> Iterator[Template]:
    """User ``user_id`` views and clicks ``count`` distinct items of ``category``."""
    cats = by_category(catalog)
    if category not in cats:
        known = ", ".join(sorted(cats)[:20])
        raise ValueError(f"category {category!r} not in the catalog (known: {known})")
    items = sorted(cats[category])
    random.Random(seed).shuffle(items)
    for item in items[:count]:
        yield Template("view", user_id, item)
        yield Template("click", user_id, item)


def stamp(t: Template, now_ms: int | None = None) -> dict[str, Any]:
    """A complete event from a template: a fresh event_id and the current time."""
    ev: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": t.event_type,
        "user_id": t.user_id,
        "item_id": t.item_id,
        "timestamp": int(time.time() * 1000) if now_ms is None else now_ms,
    }
    if t.request_id:
        ev["request_id"] = t.request_id
    return ev


@dataclass
class RunStats:
    sent: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def run(
    producer: Any,
    templates: Iterable[Template],
    rate: float | None,
    count: int | None = None,
    duration_s: float | None = None,
    topic: str | None = None,
    sink: list[dict[str, Any]] | None = None,
) -> RunStats:
    """Send stamped events through ``producer`` (an ``EventProducer``) until ``count``/``duration_s``.

    Events are built by construction within the contract and sent asynchronously (acks=all); the
    run ends with a flush, so every counted event was acknowledged. ``sink`` collects what was sent.
    """
    pacer = Pacer(rate)
    t0 = time.perf_counter()
    end = None if duration_s is None else t0 + duration_s
    sent = 0
    for t in templates:
        if (count is not None and sent >= count) or (end is not None and time.perf_counter() >= end):
            break
        ev = stamp(t)
        producer.send_raw(json.dumps(ev, separators=(",", ":")).encode(), ev["user_id"].encode(), topic)
        if sink is not None:
            sink.append(ev)
        sent += 1
        pacer.wait()
    producer.flush()
    return RunStats(sent, time.perf_counter() - t0)


def load_interactions(dataset: str | None, path: Path | None) -> Any:
    import pandas as pd

    if path is not None:
        return (
            pd.read_parquet(path)
            if path.suffix == ".parquet"
            else pd.read_csv(path, dtype={"user_id": str, "item_id": str})
        )
    try:
        from cascade_pipelines.data import load_dataset
    except ImportError:
        raise ValueError(
            "replaying a dataset needs cascade-pipelines installed (or pass --interactions FILE)"
        ) from None
    ds = load_dataset(dataset or "ml-latest-small")
    return ds.interactions.assign(
        user_id=ds.interactions["user_id"].astype(str), item_id=ds.interactions["item_id"].astype(str)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cascade_stream.simulator", description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("synthetic", "replay", "focus"))
    p.add_argument("--rate", type=float, default=100.0, help="events per second (0 = as fast as possible)")
    p.add_argument("--count", type=int, default=None, help="stop after this many events")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--items", type=Path, default=None, help="catalog parquet (default: registry version)")
    p.add_argument("--artifacts-dir", default=None)
    p.add_argument("--model-version", default="latest")
    p.add_argument("--users", type=int, default=671, help="synthetic: user ids 1..N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default="ml-latest-small", help="replay: dataset name")
    p.add_argument("--interactions", type=Path, default=None, help="replay: parquet/csv instead of a dataset")
    p.add_argument("--user", default=None, help="focus: the user")
    p.add_argument("--category", default=None, help="focus: the category")
    a = p.parse_args(argv)
    from cascade_core.errors import CascadeError

    from cascade_stream.catalog import catalog_path, load_catalog
    from cascade_stream.producer import EventProducer
    from cascade_stream.settings import KafkaSettings

    try:
        s = KafkaSettings()
        if a.mode == "replay":
            templates: Iterable[Template] = replay(load_interactions(a.dataset, a.interactions))
        else:
            catalog = load_catalog(catalog_path(a.artifacts_dir, a.model_version, a.items))
            if a.mode == "synthetic":
                templates = synthetic(catalog, a.users, a.seed)
            else:
                if not a.user or not a.category:
                    raise ValueError("focus needs --user and --category")
                templates = focus(catalog, a.user, a.category, a.count or 5, a.seed)
        if a.mode == "synthetic" and a.count is None and a.duration is None:
            raise ValueError("synthetic traffic is endless: give --count or --duration")
        with EventProducer(s.kafka, s.topics.events) as producer:
            stats = run(
                producer, templates, a.rate or None, a.count if a.mode != "focus" else None, a.duration
            )
    except (CascadeError, FileNotFoundError, ValueError) as e:
        print(f"simulator: {e}", file=sys.stderr)
        return 2
    print(f"sent {stats.sent} events in {stats.seconds:.1f}s ({stats.rate:.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
