"""Ranker backend contract and the backend configuration table.

A backend hosts ONNX rankers keyed by ``(model, version)`` and scores float32 feature matrices.
The ranking service talks only to :class:`RankerBackend`; which implementation runs is chosen by
the ``type`` of :data:`BackendConfig` (``CASCADE_BACKEND__TYPE=onnxruntime|triton``).

Contract every implementation honours (checked by ``tests/unit/ranking/backend_contract.py``):

* ``__init__(config)`` does no I/O; ``initialize()`` connects (Triton) or is a no-op;
* ``load`` makes ``(model, version)`` scoreable before it returns (idempotent for an already
  loaded pair); ``unload`` removes it; ``loaded()`` lists the pairs ready to score, sorted;
* ``score`` maps float32 ``[N, F]`` to float32 ``[N]`` in row order, rows scored independently,
  ``N == 0`` gives an empty array; an unknown pair raises :class:`NotFoundError`, an unreachable
  model server raises :class:`UnavailableError`; a wrong feature count raises
  :class:`InvalidArgumentError` (field ``"cols"``).
"""

from __future__ import annotations

import abc
import pathlib
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class RankerBackend(abc.ABC):
    """Hosts ONNX rankers and scores feature matrices with them."""

    #: short backend name for logs and metrics ("onnxruntime", "triton")
    kind: str = "backend"

    async def initialize(self) -> None:
        """Connect to the model server (if any). Called once at service start-up."""
        return None

    @abc.abstractmethod
    async def load(self, model: str, version: str, onnx_path: pathlib.Path) -> None:
        """Make ``(model, version)`` scoreable from the ONNX file at ``onnx_path``."""

    @abc.abstractmethod
    async def unload(self, model: str, version: str) -> None:
        """Stop serving ``(model, version)`` (no-op when it is not loaded)."""

    @abc.abstractmethod
    async def score(self, model: str, version: str, features: np.ndarray) -> np.ndarray:
        """Score float32 ``[N, F]`` rows; returns float32 ``[N]`` in input order."""

    @abc.abstractmethod
    def loaded(self) -> list[tuple[str, str]]:
        """The ``(model, version)`` pairs ready to score, sorted."""

    async def close(self) -> None:
        """Release sessions / connections."""
        return None


class OnnxRuntimeConfig(BaseModel):
    """In-process onnxruntime on CPU (the default): no network hop, threads pinned small."""

    type: Literal["onnxruntime"] = "onnxruntime"
    intra_op_threads: int = Field(default=1, ge=1, le=64)
    inter_op_threads: int = Field(default=1, ge=1, le=64)


class TritonConfig(BaseModel):
    """NVIDIA Triton Inference Server over gRPC (``tritonclient``), models in explicit mode.

    Every knob is declared here (unknown keys are rejected), so settings such as
    ``CASCADE_BACKEND__PROFILE=gpu`` validate without importing ``tritonclient``. See docs/triton.md.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["triton"] = "triton"
    url: str = "127.0.0.1:8001"
    timeout_s: float = Field(default=1.0, gt=0)
    profile: Literal["cpu", "gpu", "python"] = "cpu"
    load_timeout_s: float = Field(300.0, gt=0, description="load/unload deadline (TensorRT builds are slow)")
    connect_timeout_s: float = Field(30.0, ge=0, description="initialize() waits this long for readiness")
    retries: int = Field(2, ge=0, le=10, description="extra attempts on UNAVAILABLE (idempotent calls)")
    retry_backoff_s: float = Field(0.025, gt=0, description="full-jitter backoff base")
    max_batch_size: int = Field(4096, ge=1, description="rows per Triton request; larger inputs are split")
    preferred_batch_sizes: list[int] = Field(default_factory=lambda: [256, 512, 1024])
    max_queue_delay_us: int = Field(500, ge=0, description="dynamic batcher wait for more rows")
    instances: int = Field(1, ge=1, description="model instances per device")
    threads: int = Field(1, ge=1, description="onnxruntime intra-op threads per instance")


BackendConfig = Annotated[Union[OnnxRuntimeConfig, TritonConfig], Field(discriminator="type")]
