"""FastAPI application factory.

Endpoints live in their own modules, each exposing an ``APIRouter`` listed in :data:`ROUTERS`; a later
``POST /v1/events`` (Kafka ingestion) adds ``events.py`` and one entry here, opening its producer in
:func:`lifespan` next to the router channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cascade_gateway import events, ops, recommendations
from cascade_gateway.errors import ApiError, api_error_handler, http_error_handler, validation_error_handler
from cascade_gateway.metrics import metrics_middleware
from cascade_gateway.router_client import RouterClient
from cascade_gateway.settings import GatewaySettings

ROUTERS: tuple[APIRouter, ...] = (recommendations.router, events.router, ops.router)


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = RouterClient(settings.router_target, settings.request_timeout_s, settings.health_timeout_s)
        await client.open()
        app.state.router = client
        try:
            yield
        finally:
            await events.close_producer(app)
            await client.close()

    app = FastAPI(
        title="Cascade gateway",
        version="1.0.0",
        description="HTTP/JSON front of the Cascade A/B router for storefronts that cannot speak gRPC.",
        lifespan=lifespan,
    )
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.middleware("http")(metrics_middleware)
    for r in ROUTERS:
        app.include_router(r)
    return app
