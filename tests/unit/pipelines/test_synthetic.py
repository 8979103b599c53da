from __future__ import annotations

import numpy as np
import pydantic
import pytest

from cascade_pipelines.data import Dataset
from cascade_pipelines.synthetic import SyntheticConfig, generate


def test_seeded_and_deterministic(tiny: Dataset, tiny_config: SyntheticConfig) -> None:
    TINY = tiny_config
    assert generate(TINY).fingerprint() == tiny.fingerprint()
    other = generate(TINY.model_copy(update={"seed": TINY.seed + 1}))
    assert other.fingerprint() != tiny.fingerprint()


def test_shape_and_bounds(tiny: Dataset, tiny_config: SyntheticConfig) -> None:
    TINY = tiny_config
    per_user = np.bincount(tiny.user_codes(), minlength=tiny.n_users)
    assert per_user.min() >= TINY.min_interactions and per_user.max() <= TINY.max_interactions
    # no user interacts twice with the same item
    key = tiny.user_codes() * tiny.n_items + tiny.item_codes()
    assert len(np.unique(key)) == len(key)
    r = tiny.interactions["rating"].to_numpy()
    assert r.min() >= 1 and r.max() <= 5
    ts = tiny.interactions["timestamp"].to_numpy()
    assert ts.min() >= TINY.start_ts


def test_power_law_popularity() -> None:
    ds = generate(SyntheticConfig(n_users=3000, n_items=2000, seed=1))
    counts = np.sort(np.bincount(ds.item_codes(), minlength=ds.n_items))[::-1].astype(float)
    ranks = np.arange(1, len(counts) + 1)
    head = (counts > 0) & (ranks <= len(counts) // 5)
    slope = np.polyfit(np.log(ranks[head]), np.log(counts[head]), 1)[0]
    assert -2.0 < slope < -0.5, slope  # log-log linear decay of popularity with rank
    assert counts[: len(counts) // 10].sum() / counts.sum() > 0.35  # top 10% of items: > 35% of traffic


def test_users_follow_latent_categories(tiny: Dataset) -> None:
    """Learnable structure: a user's interactions concentrate on few categories, far more than if the
    same items were assigned to users at random."""
    cats = tiny.categories()
    g = tiny.genre_matrix(cats)

    def concentration(users: np.ndarray, items: np.ndarray) -> float:
        m = np.zeros((tiny.n_users, len(cats)))
        np.add.at(m, users, g[items])
        return float(np.mean(m.max(1) / np.maximum(m.sum(1), 1)))

    u, i = tiny.user_codes(), tiny.item_codes()
    shuffled = np.random.default_rng(0).permutation(i)
    assert concentration(u, i) > 1.2 * concentration(u, shuffled)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(pydantic.ValidationError, match="n_users"):
        SyntheticConfig(n_users=0)
    with pytest.raises(pydantic.ValidationError, match="max_interactions"):
        SyntheticConfig(max_interactions=500, pool_size=100)
