"""Ranker backends table: ``type`` of the config -> implementation (imported lazily).

``tritonclient`` is imported only when a Triton backend is configured, so the default in-process
path never pays for it.
"""

from __future__ import annotations

from cascade_ranking.backends.base import (
    BackendConfig,
    OnnxRuntimeConfig,
    RankerBackend,
    TritonConfig,
)

__all__ = ["BackendConfig", "OnnxRuntimeConfig", "RankerBackend", "TritonConfig", "make_backend"]


def make_backend(config: OnnxRuntimeConfig | TritonConfig) -> RankerBackend:
    """Build (without I/O) the backend selected by ``config.type``."""
    if isinstance(config, OnnxRuntimeConfig):
        from cascade_ranking.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(config)
    if isinstance(config, TritonConfig):
        from cascade_ranking.backends.triton import TritonBackend

        return TritonBackend(config)
    raise TypeError(f"unknown ranker backend config {type(config).__name__}")
