"""Ranker backend on NVIDIA Triton Inference Server (gRPC, explicit model control).

Naming: one Triton model per registry version, ``<model>__<version>`` (e.g.
``ranker__v20261121-101500-ab12cd34``) with the single Triton version ``1``. Registry version ids
already match Triton's name alphabet, so no index file is needed and loading/unloading a registry
version is loading/unloading one Triton model, independently of every other version.

Loading ships the model *in the request* (repository API "override": config JSON plus
``file:1/model.onnx``), so the ranking pod and Triton need no shared volume and a restart of either
side is recovered by the next ``load``. Configs are built as Triton's own ``ModelConfig`` protobuf,
so a misspelt field fails here, not on the server; :mod:`cascade_pipelines.triton_repo` writes the
same configs to disk for a pre-built repository.

Profiles: ``cpu`` (``onnxruntime_onnx``, KIND_CPU), ``gpu`` (``onnxruntime_onnx`` with the TensorRT
execution accelerator, FP16, KIND_GPU) and ``python`` (Triton's python backend running the same ONNX
file through onnxruntime — the only backend the pip-installable tritonserver carries, used on
machines without the onnxruntime backend). ``tensorrt_plan`` configs are rendered for pre-built
plans (``scripts/triton/build_trt_plan.sh``) by the repository generator only.

Triton's dynamic batcher merges concurrent requests; requests larger than ``max_batch_size`` rows
are split here. Inference is a pure function, so UNAVAILABLE is retried (bounded, full jitter)
within the request deadline (the propagated one when shorter than ``timeout_s``); nothing else is
retried. Inference goes through a circuit breaker (``cascade_platform.breaker``, target ``triton``):
while Triton keeps failing, ``score`` fails at once with ``CircuitOpenError`` (an ``UnavailableError``:
the router serves retrieval order) instead of waiting for a deadline. Model control (load/unload) is
not behind the breaker: it has its own long deadline and runs off the request path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import pathlib
import random
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, TypeVar

import numpy as np
from google.protobuf import json_format, text_format
from pydantic import Field
from tritonclient.grpc import InferInput, InferRequestedOutput, model_config_pb2 as mc
from tritonclient.grpc import aio as grpcclient
from tritonclient.utils import InferenceServerException

from cascade_core.errors import (
    CascadeError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from cascade_core.registry import VERSION_RE
from cascade_platform.breaker import CircuitBreaker
from cascade_platform.context import remaining_s
from cascade_ranking.backends.base import RankerBackend, TritonConfig

log = logging.getLogger("cascade.ranking.triton")

T = TypeVar("T")
Profile = Literal["cpu", "gpu", "python", "tensorrt_plan"]
TRITON_VERSION = 1
NAME_SEP = "__"
_MODEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]|_(?!_))*$")  # no "__": it separates the version


class TritonBackendConfig(TritonConfig):
    """The backend's view of :class:`TritonConfig` (all knobs live there; see docs/triton.md)."""

    @classmethod
    def coerce(cls, config: TritonConfig | None) -> "TritonBackendConfig":
        if isinstance(config, cls):
            return config
        return cls.model_validate(config.model_dump() if config is not None else {})


def triton_model_name(model: str, version: str) -> str:
    """``<model>__<version>``: the Triton model that serves one registry version."""
    if not _MODEL_RE.match(model):
        raise InvalidArgumentError("model", f"{model!r} is not a valid ranker name (letters, digits, . - _)")
    if not VERSION_RE.match(version):
        raise InvalidArgumentError("version", f"{version!r} is not a valid registry version id")
    return f"{model}{NAME_SEP}{version}"


# ------------------------------------------------------------------------------------------------
# Model configs
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What a Triton config needs to know about one ranker ONNX graph and how to serve it."""

    name: str
    n_features: int
    profile: Profile
    input_name: str = "features"
    output_name: str = "score"
    max_batch_size: int = 4096
    preferred_batch_sizes: tuple[int, ...] = (256, 512, 1024)
    max_queue_delay_us: int = 500
    instances: int = 1
    threads: int = 1
    trt_cache_dir: str = "/tmp/triton-trt-cache"
    digest: str = ""  # sha256 of the model file: a changed file changes the config, so Triton reloads

    @classmethod
    def from_config(cls, cfg: TritonBackendConfig, name: str, n_features: int, **io: str) -> "ModelSpec":
        return cls(name=name, n_features=n_features, profile=cfg.profile, max_batch_size=cfg.max_batch_size,
                   preferred_batch_sizes=tuple(cfg.preferred_batch_sizes),
                   max_queue_delay_us=cfg.max_queue_delay_us, instances=cfg.instances, threads=cfg.threads, **io)

    @property
    def model_filename(self) -> str:
        return "model.plan" if self.profile == "tensorrt_plan" else "model.onnx"


def model_config(spec: ModelSpec) -> mc.ModelConfig:
    """The Triton ``ModelConfig`` for ``spec`` (validated by protobuf while it is built)."""
    gpu = spec.profile in ("gpu", "tensorrt_plan")
    preferred = sorted(b for b in spec.preferred_batch_sizes if b <= spec.max_batch_size)
    cfg: dict[str, Any] = {
        "name": spec.name,
        "max_batch_size": spec.max_batch_size,
        "version_policy": {"latest": {"num_versions": 1}},
        "input": [{"name": spec.input_name, "data_type": "TYPE_FP32", "dims": [spec.n_features]}],
        # The graph's output is [N]; Triton needs a non-empty per-row shape, hence dims [1] + reshape [].
        "output": [{"name": spec.output_name, "data_type": "TYPE_FP32", "dims": [1],
                    "reshape": {"shape": []}}],
        "dynamic_batching": {"preferred_batch_size": preferred,
                             "max_queue_delay_microseconds": spec.max_queue_delay_us},
        "instance_group": [{"kind": "KIND_GPU" if gpu else "KIND_CPU", "count": spec.instances}],
        "model_warmup": [{
            "name": "zeros", "batch_size": 1,
            "inputs": {spec.input_name: {"data_type": "TYPE_FP32", "dims": [spec.n_features],
                                         "zero_data": True}},
        }],
    }
    params: dict[str, str] = {"cascade_model_sha256": spec.digest} if spec.digest else {}
    if spec.profile == "python":
        cfg["backend"] = "python"
        params["intra_op_threads"] = str(spec.threads)
    elif spec.profile == "tensorrt_plan":
        cfg["platform"] = "tensorrt_plan"
    else:
        cfg["platform"] = "onnxruntime_onnx"
        params["intra_op_thread_count"] = str(spec.threads)
    if params:
        cfg["parameters"] = {k: {"string_value": v} for k, v in params.items()}
    if spec.profile == "gpu":
        f, mbs = spec.n_features, spec.max_batch_size
        opt = preferred[-1] if preferred else mbs
        trt = {
            "precision_mode": "FP16",
            "max_workspace_size_bytes": str(1 << 30),
            "trt_engine_cache_enable": "true",
            "trt_engine_cache_path": spec.trt_cache_dir,
            "trt_profile_min_shapes": f"{spec.input_name}:1x{f}",
            "trt_profile_opt_shapes": f"{spec.input_name}:{opt}x{f}",
            "trt_profile_max_shapes": f"{spec.input_name}:{mbs}x{f}",
        }
        cfg["optimization"] = {"execution_accelerators": {
            "gpu_execution_accelerator": [{"name": "tensorrt", "parameters": trt}]}}
    return json_format.ParseDict(cfg, mc.ModelConfig())


def config_pbtxt(cfg: mc.ModelConfig) -> str:
    return text_format.MessageToString(cfg)


def config_json(cfg: mc.ModelConfig) -> str:
    return json_format.MessageToJson(cfg, preserving_proto_field_name=True)


def model_files(spec: ModelSpec, model_bytes: bytes) -> dict[str, bytes]:
    """Files of one model directory, relative to it (besides ``config.pbtxt``)."""
    files = {f"{TRITON_VERSION}/{spec.model_filename}": model_bytes}
    if spec.profile == "python":
        files[f"{TRITON_VERSION}/model.py"] = PYTHON_MODEL_SOURCE.encode()
    return files


PYTHON_MODEL_SOURCE = '''\
"""Triton python-backend model: runs model.onnx (next to this file) with onnxruntime on CPU.

Generated by cascade_ranking.backends.triton. Triton's dynamic batcher hands execute() a list of
requests; their rows are concatenated into one onnxruntime call and the scores split back.
"""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        params = cfg.get("parameters", {})
        threads = int(params.get("intra_op_threads", {}).get("string_value", "1"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = cfg["input"][0]["name"]
        self.output_name = cfg["output"][0]["name"]

    def execute(self, requests):
        xs = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        try:
            (scores,) = self.session.run([self.output_name], {self.input_name: np.concatenate(xs)})
        except Exception as e:  # one bad batch fails its requests, not the model
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))) for _ in requests]
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        out, start = [], 0
        for x in xs:
            n = x.shape[0]
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, scores[start:start + n])]))
            start += n
        return out
'''


def inspect_onnx(path: pathlib.Path) -> tuple[str, str, int]:
    """(input name, output name, feature count) of a ranker ONNX file."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    if len(inp.shape) != 2 or not isinstance(inp.shape[1], int):
        raise ValueError(f"{path}: ranker input must be [N, F] with a fixed F, got {inp.shape}")
    return inp.name, out.name, int(inp.shape[1])


# ------------------------------------------------------------------------------------------------
# Backend
# ------------------------------------------------------------------------------------------------
@dataclass
class _Loaded:
    triton_name: str
    spec: ModelSpec
    onnx_path: pathlib.Path
    reload: asyncio.Task | None = field(default=None, repr=False)


def _status(e: InferenceServerException) -> str:
    return str(e.status() or "").removeprefix("StatusCode.")


def map_error(e: InferenceServerException, what: str) -> CascadeError:
    """Triton/gRPC error -> cascade domain error."""
    status, msg = _status(e), e.message() or str(e)
    if status == "NOT_FOUND":
        return NotFoundError(f"{what}: not loaded on Triton ({msg})")
    if status == "INVALID_ARGUMENT":
        return InvalidArgumentError("features", f"{what}: {msg}")
    if status == "RESOURCE_EXHAUSTED":
        return ResourceExhaustedError(f"{what}: Triton is overloaded ({msg})")
    if status == "DEADLINE_EXCEEDED":
        return UnavailableError(f"{what}: Triton did not answer within the deadline")
    return UnavailableError(f"{what}: Triton {status or 'error'}: {msg}")


class TritonBackend(RankerBackend):
    kind = "triton"

    def __init__(self, config: TritonConfig | None = None) -> None:
        self.config = TritonBackendConfig.coerce(config)
        self._client: grpcclient.InferenceServerClient | None = None
        self._models: dict[tuple[str, str], _Loaded] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._breaker: CircuitBreaker | None = None

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker around inference calls (created on first use: no settings I/O in ``__init__``)."""
        if self._breaker is None:
            self._breaker = CircuitBreaker("ranking", "triton")
        return self._breaker

    @property
    def client(self) -> grpcclient.InferenceServerClient:
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self.config.url)
        return self._client

    async def initialize(self) -> None:
        """Wait (up to ``connect_timeout_s``) until Triton reports ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.connect_timeout_s
        while True:
            try:
                if await self.client.is_server_ready(client_timeout=self.config.timeout_s):
                    return
            except InferenceServerException as e:
                last = e.message()
            else:
                last = "not ready"
            if loop.time() >= deadline:
                raise UnavailableError(f"Triton at {self.config.url} is not ready: {last}")
            await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))

    async def _retrying(
        self,
        call: Callable[[float], Awaitable[T]],
        budget_s: float,
        what: str,
        breaker: CircuitBreaker | None = None,
    ) -> T:
        """Run ``call(remaining_s)``; retry UNAVAILABLE (bounded, full jitter) while budget remains.

        With a ``breaker`` every attempt asks it first (an open circuit raises ``CircuitOpenError``)
        and reports its outcome: Triton errors mapped to ``UnavailableError`` count as failures.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        for attempt in range(self.config.retries + 1):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            probe = breaker.before_call() if breaker is not None else False
            try:
                out = await call(remaining)
            except InferenceServerException as e:
                err = map_error(e, what)
                if breaker is not None:
                    if isinstance(err, UnavailableError):
                        breaker.on_failure(probe)
                    else:
                        breaker.on_success(probe)  # Triton answered: it is up
                if _status(e) != "UNAVAILABLE" or attempt == self.config.retries:
                    raise err from None
                pause = self.config.retry_backoff_s * 2**attempt * random.random()
                await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
                continue
            except BaseException:
                if breaker is not None:
                    breaker.on_ignored(probe)
                raise
            if breaker is not None:
                breaker.on_success(probe)
            return out
        raise UnavailableError(f"{what}: Triton did not answer within {budget_s:.3g}s")

    async def load(self, model: str, version: str, onnx_path: pathlib.Path) -> None:
        key = (model, version)
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key in self._models:
                return
            path = pathlib.Path(onnx_path)
            if not path.is_file():
                raise NotFoundError(f"ranker file {path} not found for {model}:{version}")
            name = triton_model_name(model, version)
            input_name, output_name, n_features = await asyncio.to_thread(inspect_onnx, path)
            spec = ModelSpec.from_config(self.config, name, n_features, input_name=input_name,
                                         output_name=output_name)
            await self._load_on_server(spec, path)
            self._models[key] = _Loaded(name, spec, path)
            log.info("triton loaded %s (%s profile, %d features)", name, spec.profile, n_features)

    async def _load_on_server(self, spec: ModelSpec, path: pathlib.Path) -> None:
        data = await asyncio.to_thread(path.read_bytes)
        spec = dataclasses.replace(spec, digest=hashlib.sha256(data).hexdigest())
        config = config_json(model_config(spec))
        files = {f"file:{rel}": blob for rel, blob in model_files(spec, data).items()}

        async def call(remaining: float) -> None:
            await self.client.load_model(spec.name, config=config, files=files, client_timeout=remaining)

        try:
            await self._retrying(call, self.config.load_timeout_s, f"load {spec.name}")
        except InvalidArgumentError as e:  # Triton reports a model that fails to load as INVALID_ARGUMENT
            raise ValueError(f"Triton could not load {spec.name} from {path}: {e.message}") from None

    async def unload(self, model: str, version: str) -> None:
        key = (model, version)
        async with self._locks.setdefault(key, asyncio.Lock()):
            m = self._models.pop(key, None)
            if m is None:
                return
            if m.reload is not None:
                m.reload.cancel()

            async def call(remaining: float) -> None:
                await self.client.unload_model(m.triton_name, client_timeout=remaining)

            await self._retrying(call, self.config.load_timeout_s, f"unload {m.triton_name}")

    async def score(self, model: str, version: str, features: np.ndarray) -> np.ndarray:
        m = self._models.get((model, version))
        if m is None:
            raise NotFoundError(f"ranker {model}:{version} is not loaded (loaded: {self.loaded()})")
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2:
            raise InvalidArgumentError("cols", f"feature matrix must be 2-D, got shape {x.shape}")
        if x.shape[1] != m.spec.n_features:
            raise InvalidArgumentError(
                "cols", f"ranker {model}:{version} takes {m.spec.n_features} features, got {x.shape[1]}")
        if x.shape[0] == 0:
            return np.empty((0,), dtype=np.float32)
        step = self.config.max_batch_size
        parts = await asyncio.gather(*(self._infer(m, x[i:i + step]) for i in range(0, x.shape[0], step)))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _infer(self, m: _Loaded, x: np.ndarray) -> np.ndarray:
        inp = InferInput(m.spec.input_name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        outputs = [InferRequestedOutput(m.spec.output_name)]

        async def call(remaining: float) -> np.ndarray:
            r = await self.client.infer(m.triton_name, [inp], outputs=outputs, client_timeout=remaining)
            return np.asarray(r.as_numpy(m.spec.output_name), dtype=np.float32).reshape(-1)

        budget = self.config.timeout_s
        left = remaining_s()  # the caller's deadline, propagated through the ranking RPC
        if left is not None:
            budget = min(budget, left)
        if budget <= 0:
            raise UnavailableError(f"score {m.triton_name}: no time left in the request deadline")
        try:
            out = await self._retrying(call, budget, f"score {m.triton_name}", self.breaker)
        except NotFoundError:
            # We loaded it, Triton lost it (restarted or unloaded behind our back): reload in the
            # background and report the dependency as not warm instead of "unknown model".
            self._schedule_reload(m)
            raise UnavailableError(f"score {m.triton_name}: Triton lost the model; reloading it") from None
        if out.shape != (x.shape[0],):
            raise UnavailableError(f"score {m.triton_name}: got {out.shape} scores for {x.shape[0]} rows")
        return out

    def _schedule_reload(self, m: _Loaded) -> None:
        if m.reload is not None and not m.reload.done():
            return

        async def reload() -> None:
            try:
                await self._load_on_server(m.spec, m.onnx_path)
                log.warning("triton reloaded %s after it went missing", m.triton_name)
            except (CascadeError, ValueError) as e:
                log.error("triton reload of %s failed: %s", m.triton_name, e)

        m.reload = asyncio.get_running_loop().create_task(reload())

    def loaded(self) -> list[tuple[str, str]]:
        return sorted(self._models)

    async def close(self) -> None:
        for m in self._models.values():
            if m.reload is not None:
                m.reload.cancel()
        self._models.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None
