"""The routing document the ranking service hot-reloads (``CASCADE_MODEL_ROUTING_FILE``)::

    {"default": "v1", "canary": "v2", "canary_weight": 10}

Same schema as ``cascade_ranking.routing.ModelRouting`` (a unit test keeps the two in step). It is
redefined here so that operators' tools (``kubectl cascade`` on a laptop) do not need the ranking
service and its model runtime installed.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RoutingDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str = Field(min_length=1)
    canary: str | None = None
    canary_weight: int = Field(default=0, ge=0, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> "RoutingDoc":
        if self.canary_weight and not self.canary:
            raise ValueError("canary_weight > 0 needs a canary version")
        if self.canary is not None and self.canary == self.default:
            raise ValueError(f"canary {self.canary!r} is also the default")
        return self

    def versions(self) -> list[str]:
        return [self.default, *([self.canary] if self.canary else [])]

    def to_json(self) -> str:
        """Canonical file content (one line, stable key order, trailing newline)."""
        return json.dumps(
            {"default": self.default, "canary": self.canary, "canary_weight": self.canary_weight}
        ) + "\n"

    def describe(self) -> str:
        if self.canary:
            return f"{self.default} ({100 - self.canary_weight}%) + canary {self.canary} ({self.canary_weight}%)"
        return f"{self.default} (100%)"
