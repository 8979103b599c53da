"""``POST /v1/recommendations``: JSON -> router Recommend over gRPC -> JSON."""

from __future__ import annotations

from fastapi import APIRouter, Request

from cascade_gateway.errors import ErrorBody
from cascade_gateway.router_client import RouterClient, forwarded_credentials
from cascade_gateway.schemas import RecommendationRequest, RecommendationResponse

router = APIRouter(tags=["recommendations"])

_ERRORS = {
    400: {"model": ErrorBody, "description": "Invalid request; the message names the field to fix."},
    401: {"model": ErrorBody, "description": "Unauthenticated."},
    404: {"model": ErrorBody, "description": "Not found."},
    429: {"model": ErrorBody, "description": "Rate limited; see Retry-After."},
    503: {"model": ErrorBody, "description": "Router unavailable or out of time."},
}


@router.post("/v1/recommendations", response_model=RecommendationResponse, responses=_ERRORS)  # type: ignore[arg-type]
async def recommend(body: RecommendationRequest, request: Request) -> RecommendationResponse:
    """Ranked recommendations for one user (the router's ``Recommend``)."""
    client: RouterClient = request.app.state.router
    creds = forwarded_credentials(request.headers)
    return RecommendationResponse.from_proto(await client.recommend(body.to_proto(), creds))
