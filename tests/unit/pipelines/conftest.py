"""Shared fixtures: the real ml-latest-small data and one tiny end-to-end training run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade_pipelines.data import Dataset, load_dataset
from cascade_pipelines.synthetic import SyntheticConfig, generate

TINY = SyntheticConfig(n_users=600, n_items=400, n_categories=8, mean_interactions=25, max_interactions=120,
                       pool_size=300, seed=7)


@pytest.fixture(scope="session")
def ml_small() -> Dataset:
    return load_dataset("ml-latest-small")


@pytest.fixture(scope="session")
def tiny_config() -> SyntheticConfig:
    return TINY


@pytest.fixture(scope="session")
def tiny() -> Dataset:
    return generate(TINY)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny: Dataset) -> tuple[Path, str]:
    """(artifacts root, version id) of a full training run on the tiny synthetic dataset."""
    from cascade_pipelines.train import TrainParams, run

    root = tmp_path_factory.mktemp("artifacts")
    vid = run(TrainParams(dataset="synthetic", epochs=4, ranker_epochs=6), root, dataset=tiny)
    return root, vid
