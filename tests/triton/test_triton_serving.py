"""Serving through a real tritonserver: parity with in-process onnxruntime and hot version swaps."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import InferInput, InferRequestedOutput

from cascade_pipelines.optimize import feature_rows
from cascade_ranking.backends.onnxruntime import OnnxRuntimeBackend
from cascade_ranking.backends.triton import TritonBackend, TritonBackendConfig

MAX_ABS_DIFF = 1e-5


@pytest.fixture(scope="module")
def rows(ranker_registry) -> np.ndarray:
    """Real feature rows (the version's Feast tables) when it has them, else seeded random rows."""
    return feature_rows(ranker_registry.registry, ranker_registry.version, 6000, seed=3)


@pytest.fixture
async def backends(triton_server, ranker_registry):
    tri = TritonBackend(TritonBackendConfig(url=triton_server.url, profile="python", timeout_s=20.0))
    ref = OnnxRuntimeBackend()
    await tri.initialize()
    for b in (tri, ref):
        await b.load("ranker", ranker_registry.version, ranker_registry.onnx_path)
    yield tri, ref
    await tri.unload("ranker", ranker_registry.version)
    await tri.close()
    await ref.close()


@pytest.mark.parametrize("n", [1, 7, 100, 2000, 6000])  # 6000 > max_batch_size: split into two requests
async def test_triton_scores_equal_in_process_onnxruntime(backends, ranker_registry, rows, n):
    tri, ref = backends
    x = rows[:n]
    got = await tri.score("ranker", ranker_registry.version, x)
    want = await ref.score("ranker", ranker_registry.version, x)
    assert got.dtype == np.float32 and got.shape == (n,)
    diff = float(np.max(np.abs(got - want)))
    print(f"n={n} max|triton - onnxruntime| = {diff:.3g} (real registry: {ranker_registry.real})")
    assert diff <= MAX_ABS_DIFF
    if n >= 100:
        assert np.std(want) > 0  # the rows really exercise the model


async def test_pre_built_repository_model_loads_from_disk(triton_server, ranker_registry, rows):
    """The model dir written by cascade_pipelines.triton_repo loads by name (no override) and agrees."""
    ref = OnnxRuntimeBackend()
    await ref.load("ranker", ranker_registry.version, ranker_registry.onnx_path)
    client = grpcaio.InferenceServerClient(triton_server.url)
    try:
        await client.load_model(triton_server.model_name, client_timeout=120)
        assert await client.is_model_ready(triton_server.model_name)
        cfg = await client.get_model_config(triton_server.model_name, as_json=True)
        assert cfg["config"]["backend"] == "python"
        x = rows[:300]
        inp = InferInput("features", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        r = await client.infer(triton_server.model_name, [inp], outputs=[InferRequestedOutput("score")],
                               client_timeout=20)
        got = r.as_numpy("score").reshape(-1)
        want = await ref.score("ranker", ranker_registry.version, x)
        assert float(np.max(np.abs(got - want))) <= MAX_ABS_DIFF
    finally:
        await client.unload_model(triton_server.model_name)
        await client.close()


async def test_second_version_loads_and_first_unloads_under_concurrent_scoring(triton_server, tmp_path, rows):
    """Hot swap: 8 concurrent scorers keep hitting v1 while v2 loads, then v2 while v1 unloads; 0 failures."""
    from backend_contract import TinyRanker

    n_features = rows.shape[1]
    r1, r2 = TinyRanker.random(n_features, seed=41), TinyRanker.random(n_features, seed=42)
    p1, p2 = r1.to_onnx(tmp_path / "v1.onnx"), r2.to_onnx(tmp_path / "v2.onnx")
    b = TritonBackend(TritonBackendConfig(url=triton_server.url, profile="python", timeout_s=20.0))
    await b.initialize()
    await b.load("ranker", "swap-v1", p1)
    x = rows[:100]
    want = {"swap-v1": r1.predict(x), "swap-v2": r2.predict(x)}
    target = {"version": "swap-v1"}
    ok = {"swap-v1": 0, "swap-v2": 0}
    failures: list[str] = []
    stop = asyncio.Event()

    async def scorer() -> None:
        for _ in range(5000):  # bounded; normally ends by `stop`
            if stop.is_set():
                return
            version = target["version"]
            try:
                got = await b.score("ranker", version, x)
                if np.max(np.abs(got - want[version])) > 1e-4:
                    failures.append(f"{version}: wrong scores")
                else:
                    ok[version] += 1
            except Exception as e:  # noqa: BLE001 - every failure is counted, none may happen
                failures.append(f"{version}: {e!r}")

    async def wait_for(version: str, count: int) -> None:
        start = ok[version]
        while ok[version] - start < count and not failures:
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(scorer()) for _ in range(8)]
    try:
        await asyncio.wait_for(wait_for("swap-v1", 20), 60)
        before = ok["swap-v1"]
        await b.load("ranker", "swap-v2", p2)  # spawns a python-backend stub: seconds of work
        during_load = ok["swap-v1"] - before
        target["version"] = "swap-v2"
        await asyncio.wait_for(wait_for("swap-v2", 20), 60)
        before = ok["swap-v2"]
        await b.unload("ranker", "swap-v1")
        during_unload = ok["swap-v2"] - before
        await asyncio.wait_for(wait_for("swap-v2", 20), 60)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await b.unload("ranker", "swap-v2")
        await b.close()
    print(f"hot swap: {ok} successful calls, {during_load} during the v2 load, "
          f"{during_unload} during the v1 unload, {len(failures)} failures")
    assert failures == []
    assert during_load > 0  # scoring really overlapped the load
    assert b.loaded() == []
