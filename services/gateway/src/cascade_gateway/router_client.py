"""The gateway's one connection to the A/B router: opened at start-up, a deadline on every call."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_platform.client import make_channel
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cascade_gateway.errors import ApiError, from_rpc_error

# Caller headers the router's auth interceptor reads (cascade_platform.auth); forwarded unchanged.
FORWARDED_CREDENTIAL_HEADERS = ("authorization", "x-api-key")


def forwarded_credentials(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The caller's credential headers that are valid gRPC metadata (printable ASCII), in a fixed order."""
    out = []
    for name in FORWARDED_CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value and value.isascii() and value.isprintable():
            out.append((name, value))
    return tuple(out)

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

    async def recommend(
        self, req: router_pb2.RecommendRequest, credentials: tuple[tuple[str, str], ...] = ()
    ) -> router_pb2.RecommendResponse:
        """``credentials``: the caller's ``authorization`` / ``x-api-key`` headers, forwarded as-is so the
        router authenticates and rate-limits the storefront client, not the gateway."""
        if self._stub is None:
            raise ApiError(503, "UNAVAILABLE", "gateway is starting: router channel not open yet")
        rid = req.request_id
        # a header value must be printable ASCII; any other id goes in the body only, where the router
        # rejects it with INVALID_ARGUMENT naming request_id (as a header it failed the call: HTTP 500)
        md = (("x-request-id", rid),) if rid and rid.isascii() and rid.isprintable() else ()
        md += credentials
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
