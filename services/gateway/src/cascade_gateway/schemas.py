"""JSON request/response bodies of ``POST /v1/recommendations`` (fields identical to the proto).

Types are strict (``"10"`` is not a number, ``5`` is not a user id) so a storefront bug is reported
as a 400 naming the field instead of being silently coerced; unknown fields are rejected too (a typo
like ``numItems`` would otherwise be ignored). Value ranges are checked once, by the router.
"""

from __future__ import annotations

from typing import Any

from cascade.router.v1 import router_pb2
from pydantic import BaseModel, ConfigDict, Field, field_validator

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"user_id": "1", "num_items": 10, "context": {"page": "home"}}]},
    )

    user_id: str = Field(description="Required. The storefront's user id; unknown users are cold-start.")
    num_items: int = Field(0, ge=INT32_MIN, le=INT32_MAX, description="1-200; 0 means 10.")
    context: dict[str, str] = Field(default_factory=dict, description="Free-form request context.")
    exclude_item_ids: list[str] = Field(default_factory=list, description="Items that must not be returned.")
    request_id: str = Field("", description="Optional correlation id; generated when empty.")

    @field_validator("user_id", "request_id", "exclude_item_ids", "context")
    @classmethod
    def _unicode_text(cls, v: Any) -> Any:
        # JSON may carry lone surrogates ("\\ud800"): not Unicode text, and protobuf refuses them
        strings = v if isinstance(v, list) else [*v, *v.values()] if isinstance(v, dict) else [v]
        for s in strings:
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("contains a lone surrogate (not valid Unicode text)") from None
        return v

    @field_validator("context")
    @classmethod
    def _no_reserved_keys(cls, v: dict[str, str]) -> dict[str, str]:
        # "cascade.*" keys steer the router (e.g. cascade.force_variant for QA); public clients may not.
        reserved = sorted(k for k in v if k.startswith("cascade."))
        if reserved:
            raise ValueError(f"keys starting with 'cascade.' are reserved for internal tooling: {reserved}")
        return v

    def to_proto(self) -> router_pb2.RecommendRequest:
        return router_pb2.RecommendRequest(
            user_id=self.user_id,
            num_items=self.num_items,
            context=self.context,
            exclude_item_ids=self.exclude_item_ids,
            request_id=self.request_id,
        )


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    rank: int = Field(description="1-based position in the list.")
    source: str = Field(description='Candidate source ("ann", "popular", ...).')


class RecommendationResponse(BaseModel):
    request_id: str
    items: list[RecommendedItem]
    model_version: str = Field(
        description="Ranker version that scored; '<version>+retrieval-order' when ranking fell back."
    )
    variant: str = Field(description="Experiment variant the user was assigned to.")
    degraded: bool = Field(description="True when a fallback served any stage.")

    @classmethod
    def from_proto(cls, resp: router_pb2.RecommendResponse) -> RecommendationResponse:
        return cls(
            request_id=resp.request_id,
            items=[
                RecommendedItem(item_id=i.item_id, score=i.score, rank=i.rank, source=i.source)
                for i in resp.items
            ],
            model_version=resp.model_version,
            variant=resp.variant,
            degraded=resp.degraded,
        )
