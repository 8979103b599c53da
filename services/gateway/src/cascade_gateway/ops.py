"""Operational endpoints: ``/healthz`` (router reachable and SERVING) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cascade_gateway.router_client import RouterClient

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """200 when the router answers SERVING, else 503 with its status."""
    client: RouterClient = request.app.state.router
    status = await client.health()
    ok = status == "SERVING"
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "router": status}, status_code=200 if ok else 503
    )


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
