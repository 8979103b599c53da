"""A real Tansu broker, a catalog, and per-test lanes (topics, groups, Feast project) on it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cascade_stream.broker import TansuBroker
from streamtest import Lane, Worker

N_ITEMS = 200
CATEGORIES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Western")


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> TansuBroker:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = TansuBroker(log_path=log).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("catalog") / "items.parquet"
    cat = {str(i): CATEGORIES[i % len(CATEGORIES)] for i in range(1, N_ITEMS + 1)}
    pd.DataFrame(
        {"item_id": list(cat), "category": list(cat.values()), "title": [f"t{i}" for i in cat]}
    ).to_parquet(path)
    return path, cat


@pytest.fixture
def lane(broker, catalog, tmp_path) -> Lane:
    return Lane(broker, tmp_path, catalog[0])


@pytest.fixture
def workers():
    started: list[Worker] = []

    def make(env: dict[str, str], log_path: Path) -> Worker:
        w = Worker(env, log_path)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()
