"""Shared contract test suite for every :class:`cascade_ranking.backends.base.RankerBackend`.

Use it by subclassing :class:`BackendContract` in a ``test_*.py`` module and providing a
``backend_factory`` fixture that returns a *new, uninitialized* backend (the suite calls
``initialize()`` and ``close()``)::

    from backend_contract import BackendContract

    class TestTritonBackend(BackendContract):
        @pytest.fixture
        def backend_factory(self, triton_server):
            return lambda: TritonBackend(TritonConfig(url=triton_server.url))

Expected scores come from :class:`TinyRanker.predict` (a numpy reference of the same ONNX model).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType
from typing import Callable

import numpy as np
import pytest

from cascade_core.errors import InvalidArgumentError, NotFoundError
from cascade_ranking.backends.base import RankerBackend

N_FEATURES = 12
ATOL = 1e-5


def load_registry_fixture() -> ModuleType:
    """Import ``tests/integration/retrieval_ranking/registry_fixture.py`` once, by path."""
    name = "cascade_registry_fixture"
    if name not in sys.modules:
        tests = pathlib.Path(__file__).resolve().parents[2]
        path = tests / "integration" / "retrieval_ranking" / "registry_fixture.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


TinyRanker = load_registry_fixture().TinyRanker


class BackendContract:
    """Behaviour every ranker backend must show. Subclasses provide ``backend_factory``."""

    @pytest.fixture
    def backend_factory(self) -> Callable[[], RankerBackend]:
        raise NotImplementedError("subclass BackendContract and provide a backend_factory fixture")

    @pytest.fixture
    async def backend(self, backend_factory):
        b = backend_factory()
        await b.initialize()
        yield b
        await b.close()

    @pytest.fixture
    def ranker(self) -> TinyRanker:
        return TinyRanker.random(N_FEATURES, seed=11)

    @pytest.fixture
    def other_ranker(self) -> TinyRanker:
        return TinyRanker.random(N_FEATURES, seed=22)

    @pytest.fixture
    def ranker_path(self, ranker, tmp_path) -> pathlib.Path:
        return ranker.to_onnx(tmp_path / "v1" / "ranker.onnx")

    @pytest.fixture
    def other_ranker_path(self, other_ranker, tmp_path) -> pathlib.Path:
        return other_ranker.to_onnx(tmp_path / "v2" / "ranker.onnx")

    @pytest.fixture
    async def loaded(self, backend, ranker_path) -> RankerBackend:
        await backend.load("ranker", "v1", ranker_path)
        return backend

    @pytest.fixture
    def features(self) -> np.ndarray:
        return np.random.default_rng(5).normal(0, 1, (37, N_FEATURES)).astype(np.float32)

    async def test_scores_match_reference_in_row_order(self, loaded, ranker, features):
        scores = await loaded.score("ranker", "v1", features)
        assert isinstance(scores, np.ndarray)
        assert scores.dtype == np.float32 and scores.shape == (len(features),)
        np.testing.assert_allclose(scores, ranker.predict(features), atol=ATOL, rtol=1e-5)
        assert len(np.unique(scores)) > len(features) // 2  # the fixture ranker really discriminates
        flipped = await loaded.score("ranker", "v1", features[::-1].copy())
        np.testing.assert_allclose(flipped, scores[::-1], atol=ATOL)

    async def test_same_input_same_scores(self, loaded, features):
        a = await loaded.score("ranker", "v1", features)
        b = await loaded.score("ranker", "v1", features.copy())
        np.testing.assert_array_equal(a, b)

    async def test_rows_are_scored_independently(self, loaded, features):
        together = await loaded.score("ranker", "v1", features)
        one_by_one = np.concatenate(
            [await loaded.score("ranker", "v1", features[i:i + 1]) for i in range(len(features))]
        )
        np.testing.assert_allclose(one_by_one, together, atol=ATOL)
        chunks = np.concatenate(
            [await loaded.score("ranker", "v1", features[i:i + 5]) for i in range(0, len(features), 5)]
        )
        np.testing.assert_allclose(chunks, together, atol=ATOL)

    async def test_full_size_batch(self, loaded, ranker):
        x = np.random.default_rng(6).normal(0, 1, (2000, N_FEATURES)).astype(np.float32)
        scores = await loaded.score("ranker", "v1", x)
        np.testing.assert_allclose(scores, ranker.predict(x), atol=1e-4, rtol=1e-5)

    async def test_empty_input_gives_empty_scores(self, loaded):
        scores = await loaded.score("ranker", "v1", np.zeros((0, N_FEATURES), np.float32))
        assert scores.shape == (0,) and scores.dtype == np.float32

    async def test_load_unload_and_loaded(
        self, backend, ranker, other_ranker, ranker_path, other_ranker_path, features
    ):
        assert backend.loaded() == []
        await backend.load("ranker", "v2", other_ranker_path)
        await backend.load("ranker", "v1", ranker_path)
        await backend.load("ranker", "v1", ranker_path)  # idempotent
        assert backend.loaded() == [("ranker", "v1"), ("ranker", "v2")]
        s1 = await backend.score("ranker", "v1", features)
        s2 = await backend.score("ranker", "v2", features)
        np.testing.assert_allclose(s1, ranker.predict(features), atol=ATOL, rtol=1e-5)
        np.testing.assert_allclose(s2, other_ranker.predict(features), atol=ATOL, rtol=1e-5)
        assert not np.allclose(s1, s2)
        await backend.unload("ranker", "v1")
        assert backend.loaded() == [("ranker", "v2")]
        np.testing.assert_allclose(await backend.score("ranker", "v2", features), s2, atol=ATOL)
        await backend.unload("ranker", "v1")  # unloading twice is a no-op
        assert backend.loaded() == [("ranker", "v2")]

    async def test_scoring_an_unloaded_version_is_not_found(self, loaded, features):
        with pytest.raises(NotFoundError):
            await loaded.score("ranker", "v9", features)
        with pytest.raises(NotFoundError):
            await loaded.score("other", "v1", features)
        await loaded.unload("ranker", "v1")
        with pytest.raises(NotFoundError):
            await loaded.score("ranker", "v1", features)

    async def test_wrong_feature_count_is_invalid_cols(self, loaded):
        with pytest.raises(InvalidArgumentError) as ei:
            await loaded.score("ranker", "v1", np.zeros((3, N_FEATURES + 1), np.float32))
        assert ei.value.field == "cols"
