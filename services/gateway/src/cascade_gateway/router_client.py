"""The gateway's one connection to the A/B router: opened at start-up, a deadline on every call."""

from __future__ import annotations

import grpc
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_platform.client import make_channel
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cascade_gateway.errors import ApiError, from_rpc_error

ROUTER_SERVICE = router_pb2.DESCRIPTOR.services_by_name["RecommendationService"].full_name


class RouterClient:
    def __init__(self, target: str, timeout_s: float, health_timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.health_timeout_s = health_timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: router_pb2_grpc.RecommendationServiceStub | None = None
        self._health: health_pb2_grpc.HealthStub | None = None

    async def open(self) -> None:
        self._channel = make_channel(self.target)
        self._channel.get_state(try_to_connect=True)  # connect early; never blocks start-up
        self._stub = router_pb2_grpc.RecommendationServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = self._health = None

    async def recommend(self, req: router_pb2.RecommendRequest) -> router_pb2.RecommendResponse:
        if self._stub is None:
            raise ApiError(503, "UNAVAILABLE", "gateway is starting: router channel not open yet")
        md = (("x-request-id", req.request_id),) if req.request_id else ()
        try:
            return await self._stub.Recommend(req, timeout=self.timeout_s, metadata=md)
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e, self.target) from None

    async def health(self) -> str:
        """grpc.health.v1 status name of the router's RecommendationService ("UNREACHABLE" if no answer)."""
        if self._health is None:
            return "UNREACHABLE"
        try:
            resp = await self._health.Check(
                health_pb2.HealthCheckRequest(service=ROUTER_SERVICE), timeout=self.health_timeout_s
            )
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
