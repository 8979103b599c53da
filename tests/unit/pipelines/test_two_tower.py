from __future__ import annotations

import numpy as np
import torch

from cascade_pipelines.data import Dataset
from cascade_pipelines.two_tower import History, TwoTowerConfig, item_embeddings, train_two_tower, user_embeddings


def _train(tiny: Dataset) -> tuple[np.ndarray, np.ndarray]:
    g = tiny.genre_matrix(tiny.categories())
    u, i = tiny.user_codes(), tiny.item_codes()
    model, info = train_two_tower(u, i, tiny.n_users, g, TwoTowerConfig(epochs=2, seed=3), log=lambda m: None)
    assert info["best_epoch"] == 2
    users = np.arange(tiny.n_users)
    return item_embeddings(model, tiny.n_items), user_embeddings(model, History(u, i, tiny.n_users), users)


def test_seeded_training_is_bit_reproducible(tiny: Dataset) -> None:
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        a_items, a_users = _train(tiny)
        b_items, b_users = _train(tiny)
    finally:
        torch.use_deterministic_algorithms(prev)
    np.testing.assert_array_equal(a_items, b_items)
    np.testing.assert_array_equal(a_users, b_users)
    assert a_items.shape == (tiny.n_items, 64) and a_users.shape == (tiny.n_users, 64)
    # unit vectors: inner product == cosine, what the ip index searches
    np.testing.assert_allclose(np.linalg.norm(a_items, axis=1), 1.0, atol=1e-5)


def test_history_bag_offsets() -> None:
    h = History(np.array([2, 0, 2, 2]), np.array([5, 6, 7, 8]), n_users=3)
    flat, offs = h.bag(np.array([2, 1, 0]))
    assert flat.tolist() == [5, 7, 8, 6] and offs.tolist() == [0, 3, 3]
    assert h.counts.tolist() == [1.0, 0.0, 3.0]
