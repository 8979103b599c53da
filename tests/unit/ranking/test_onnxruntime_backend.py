"""The backend contract suite against the in-process onnxruntime backend."""

from __future__ import annotations

import pytest
from backend_contract import BackendContract

from cascade_ranking.backends import OnnxRuntimeConfig, make_backend
from cascade_ranking.backends.onnxruntime import OnnxRuntimeBackend


class TestOnnxRuntimeBackend(BackendContract):
    @pytest.fixture
    def backend_factory(self):
        return lambda: make_backend(OnnxRuntimeConfig(intra_op_threads=1, inter_op_threads=1))


def test_factory_builds_onnxruntime_backend_without_io():
    backend = make_backend(OnnxRuntimeConfig())
    assert isinstance(backend, OnnxRuntimeBackend)
    assert backend.loaded() == []


async def test_missing_onnx_file_is_not_found(tmp_path):
    from cascade_core.errors import NotFoundError

    backend = OnnxRuntimeBackend()
    with pytest.raises(NotFoundError, match="ranker file"):
        await backend.load("ranker", "v1", tmp_path / "absent.onnx")
    assert backend.loaded() == []


def test_triton_backend_is_built_lazily_by_the_factory():
    import subprocess
    import sys

    code = ("import sys, cascade_ranking.service; "
            "assert 'tritonclient' not in sys.modules, 'tritonclient imported by the default path'")
    subprocess.run([sys.executable, "-c", code], check=True)
    pytest.importorskip("tritonclient")
    from cascade_ranking.backends import TritonConfig

    backend = make_backend(TritonConfig(url="127.0.0.1:1"))  # no I/O: nothing listens there
    assert type(backend).__name__ == "TritonBackend" and backend.loaded() == []


async def test_score_accepts_non_contiguous_and_float64_inputs(tmp_path):
    import numpy as np

    from backend_contract import N_FEATURES, TinyRanker
    from cascade_core.errors import InvalidArgumentError

    ranker = TinyRanker.random(N_FEATURES, seed=3)
    backend = OnnxRuntimeBackend()
    await backend.load("ranker", "v1", ranker.to_onnx(tmp_path / "ranker.onnx"))
    x = np.random.default_rng(1).normal(0, 1, (20, N_FEATURES)).astype(np.float32)
    want = await backend.score("ranker", "v1", x)
    np.testing.assert_allclose(want, ranker.predict(x), atol=1e-5, rtol=1e-5)
    strided = np.repeat(x, 2, axis=0)[::2]  # not C-contiguous
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(await backend.score("ranker", "v1", strided), want)
    np.testing.assert_array_equal(await backend.score("ranker", "v1", x.astype(np.float64)), want)
    np.testing.assert_array_equal(await backend.score("ranker", "v1", x.tolist()), want)
    with pytest.raises(InvalidArgumentError, match="must be 2-D"):
        await backend.score("ranker", "v1", x[0])
    with pytest.raises(InvalidArgumentError) as ei:
        await backend.score("ranker", "v1", x[:, :-1].copy())
    assert ei.value.field == "cols"
