"""Downstream failures become UnavailableError (fail-open) and are logged once per interval."""

from __future__ import annotations

import logging

import pytest
from cascade.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from cascade_core.errors import UnavailableError
from cascade_router.stages.downstream import Downstream


async def test_refused_connection_is_unavailable_and_logged_once(closed_target: str, caplog) -> None:
    ds = Downstream(
        target=closed_target,
        target_name="retrieval",
        stub_factory=retrieval_pb2_grpc.RetrievalServiceStub,
        method="Retrieve",
        timeout_s=5.0,
    )
    await ds.open()
    try:
        caplog.set_level(logging.WARNING, logger="cascade.router.downstream")
        for _ in range(3):
            with pytest.raises(UnavailableError, match="retrieval UNAVAILABLE"):
                await ds.call(retrieval_pb2.RetrieveRequest(user_id="u", num_candidates=5), stage="retrieval")
        fallbacks = [r for r in caplog.records if r.name == "cascade.router.downstream"]
        assert len(fallbacks) == 1
        assert fallbacks[0].getMessage().startswith("retrieval falls back: retrieval UNAVAILABLE")
    finally:
        await ds.close()


async def test_call_before_open_is_a_programming_error() -> None:
    ds = Downstream(
        target="127.0.0.1:1",
        target_name="retrieval",
        stub_factory=retrieval_pb2_grpc.RetrievalServiceStub,
        method="Retrieve",
        timeout_s=1.0,
    )
    with pytest.raises(RuntimeError, match="before initialize"):
        await ds.call(retrieval_pb2.RetrieveRequest(), stage="retrieval")
