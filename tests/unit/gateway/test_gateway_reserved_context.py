"""Public HTTP clients cannot steer the router through reserved ``cascade.*`` context keys."""

import pytest
from pydantic import ValidationError

from cascade_gateway.schemas import RecommendationRequest


def test_reserved_context_keys_are_rejected_naming_the_field():
    with pytest.raises(ValidationError) as ei:
        RecommendationRequest(user_id="1", context={"cascade.force_variant": "exp/b"})
    err = ei.value.errors()[0]
    assert err["loc"] == ("context",)
    assert "cascade.force_variant" in err["msg"]


def test_ordinary_context_is_forwarded():
    req = RecommendationRequest(user_id="1", context={"page": "home"})
    assert dict(req.to_proto().context) == {"page": "home"}
