"""The ranker's baked-in standardisation never blows a near-constant training column up at serving time."""

from __future__ import annotations

import numpy as np
import torch
from cascade_pipelines.ranker import MIN_STD, RankerMLP, standardisation_scale


def test_scale_floors_small_spreads_and_zeroes_constant_columns() -> None:
    std = np.array([0.0, 1e-9, 1e-3, 0.05, MIN_STD, 0.5, 2.0])
    inv = standardisation_scale(std)
    np.testing.assert_allclose(inv, [0.0, 0.0, 1 / MIN_STD, 1 / MIN_STD, 1 / MIN_STD, 2.0, 0.5], rtol=1e-6)
    assert inv.dtype == np.float32


def test_a_rare_column_at_serving_time_stays_in_range() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype(np.float32)
    x[:, 2] = 0.0  # constant in training
    x[:5, 3], x[5:, 3] = 1.0, 0.0  # almost always 0 in training (std ~0.1)
    model = RankerMLP(4, (8,), 0.0, x.mean(0), x.std(0), wide=True).eval()
    probe = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    z = (probe - model.mean) * model.inv_std
    assert z[0, 2] == 0.0  # no signal was learned from a constant column: it cannot move the score
    assert abs(float(z[0, 3])) <= 1.0 / MIN_STD  # bounded by the floor, not 1 / 1e-6
