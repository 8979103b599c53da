"""The shared backend contract suite, and Triton-specific behaviour, against a real tritonserver."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio
from backend_contract import ATOL, N_FEATURES, BackendContract, TinyRanker

from cascade_core.errors import InvalidArgumentError, NotFoundError, UnavailableError
from cascade_platform.procs import free_port
from cascade_ranking.backends import TritonConfig, make_backend
from cascade_ranking.backends.triton import TritonBackend, TritonBackendConfig, triton_model_name


def triton_backend(url: str, **overrides) -> TritonBackend:
    return TritonBackend(TritonBackendConfig(url=url, profile="python", timeout_s=10.0, **overrides))


class TestTritonBackend(BackendContract):
    @pytest.fixture
    def backend_factory(self, triton_server):
        return lambda: triton_backend(triton_server.url)


def test_factory_builds_triton_backend_from_the_plain_config():
    backend = make_backend(TritonConfig(url="127.0.0.1:1", timeout_s=0.5))
    assert isinstance(backend, TritonBackend)
    assert backend.config.timeout_s == 0.5 and backend.config.profile == "cpu"
    assert backend.loaded() == []


def test_model_names_map_registry_versions_one_to_one():
    assert triton_model_name("ranker", "v20261121-101500-ab12cd34") == "ranker__v20261121-101500-ab12cd34"
    with pytest.raises(InvalidArgumentError):
        triton_model_name("rank__er", "v1")  # "__" separates model and version
    with pytest.raises(InvalidArgumentError):
        triton_model_name("ranker", "../v1")


@pytest.fixture
async def backend(triton_server):
    b = triton_backend(triton_server.url)
    await b.initialize()
    yield b
    await b.close()


@pytest.fixture
def rankers(tmp_path):
    a, b = TinyRanker.random(N_FEATURES, seed=31), TinyRanker.random(N_FEATURES, seed=32)
    return (a, a.to_onnx(tmp_path / "a.onnx")), (b, b.to_onnx(tmp_path / "b.onnx"))


@pytest.fixture
def x():
    return np.random.default_rng(9).normal(0, 1, (50, N_FEATURES)).astype(np.float32)


async def test_requests_larger_than_max_batch_size_are_split(triton_server, rankers, x):
    (ranker, path), _ = rankers
    b = triton_backend(triton_server.url, max_batch_size=16, preferred_batch_sizes=[8, 16])
    await b.initialize()
    try:
        await b.load("ranker", "split", path)
        np.testing.assert_allclose(await b.score("ranker", "split", x), ranker.predict(x), atol=ATOL)
    finally:
        await b.unload("ranker", "split")
        await b.close()


async def test_reloading_a_name_serves_the_new_file(triton_server, rankers, x):
    """A fresh process loading the same (model, version) must not get an older copy's weights."""
    (ra, pa), (rb, pb) = rankers
    for ranker, path in ((ra, pa), (rb, pb)):
        b = triton_backend(triton_server.url)
        await b.load("ranker", "same", path)
        np.testing.assert_allclose(await b.score("ranker", "same", x), ranker.predict(x), atol=ATOL)
        await b.close()  # leaves the model on Triton, like a ranking pod restart
    raw = grpcaio.InferenceServerClient(triton_server.url)
    await raw.unload_model(triton_model_name("ranker", "same"))
    await raw.close()


async def test_model_lost_by_triton_is_unavailable_then_reloaded(triton_server, backend, rankers, x):
    (ranker, path), _ = rankers
    await backend.load("ranker", "lost", path)
    raw = grpcaio.InferenceServerClient(triton_server.url)
    try:
        await raw.unload_model(triton_model_name("ranker", "lost"))  # behind the backend's back
        with pytest.raises(UnavailableError, match="reloading"):
            await backend.score("ranker", "lost", x)
        reload = backend._models[("ranker", "lost")].reload
        assert reload is not None
        await reload
        assert await raw.is_model_ready(triton_model_name("ranker", "lost"))
        np.testing.assert_allclose(await backend.score("ranker", "lost", x), ranker.predict(x), atol=ATOL)
    finally:
        await backend.unload("ranker", "lost")
        await raw.close()


async def test_unreachable_server_is_unavailable(rankers, x):
    (_, path), _ = rankers
    b = triton_backend(f"127.0.0.1:{free_port()}", connect_timeout_s=0.3, retries=1, load_timeout_s=2.0)
    with pytest.raises(UnavailableError, match="not ready"):
        await b.initialize()
    with pytest.raises(UnavailableError):
        await b.load("ranker", "v1", path)
    assert b.loaded() == []
    await b.close()


async def test_missing_onnx_file_is_not_found(backend, tmp_path):
    with pytest.raises(NotFoundError, match="ranker file"):
        await backend.load("ranker", "v1", tmp_path / "absent.onnx")
    assert backend.loaded() == []


async def test_corrupt_onnx_file_fails_to_load(backend, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx graph")
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error while reading the shape
        await backend.load("ranker", "bad", bad)
    assert backend.loaded() == []


async def test_deadline_is_enforced(triton_server, rankers):
    (_, path), _ = rankers
    b = triton_backend(triton_server.url)
    await b.load("ranker", "deadline", path)
    b.config = b.config.model_copy(update={"timeout_s": 1e-6, "retries": 0})
    big = np.zeros((4000, N_FEATURES), np.float32)
    with pytest.raises(UnavailableError):
        await b.score("ranker", "deadline", big)
    await b.unload("ranker", "deadline")
    await b.close()
