"""The pure promotion decisions: which routing each command produces from each state, and refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cascade_modelops.promotion import (
    MAX_HISTORY,
    Abort,
    Promote,
    PromotionError,
    Rollback,
    RolloutState,
    check_features,
    decide,
)
from cascade_modelops.routing import RoutingDoc

KNOWN = {"v1", "v2", "v3"}


def state(default: str, canary: str | None = None, weight: int = 0, history: tuple[str, ...] = ()) -> RolloutState:
    return RolloutState(RoutingDoc(default=default, canary=canary, canary_weight=weight), history)


def test_canary_promotion_keeps_default_and_history():
    d = decide(state("v1", history=("v0",)), Promote("v2", 10), KNOWN)
    assert d.action == "promote-canary" and d.version == "v2"
    assert d.after == state("v1", "v2", 10, ("v0",))
    assert d.aliases == {"production": "v1", "canary": "v2"}
    assert d.notes == ()


def test_canary_reweight_and_replace():
    d = decide(state("v1", "v2", 10), Promote("v2", 50), KNOWN)
    assert d.after.routing == RoutingDoc(default="v1", canary="v2", canary_weight=50)
    d = decide(state("v1", "v2", 10), Promote("v3", 5), KNOWN)
    assert d.after.routing == RoutingDoc(default="v1", canary="v3", canary_weight=5)
    assert d.notes == ("replaced canary v2",)


def test_full_promotion_pushes_old_default_and_drops_canary():
    d = decide(state("v1", "v2", 50), Promote("v2"), KNOWN)
    assert d.action == "promote-full"
    assert d.after == state("v2", history=("v1",))
    assert d.aliases == {"production": "v2", "canary": None}
    d = decide(state("v1", "v3", 50), Promote("v2"), KNOWN)
    assert d.after == state("v2", history=("v1",))
    assert d.notes == ("dropped canary v3",)


def test_history_is_bounded():
    long = tuple(f"h{i}" for i in range(MAX_HISTORY))
    d = decide(state("v1", history=long), Promote("v2"), KNOWN)
    assert len(d.after.history) == MAX_HISTORY
    assert d.after.history[-1] == "v1" and d.after.history[0] == "h1"


def test_rollback_returns_to_previous_default_and_pops_history():
    d = decide(state("v3", "v2", 20, ("v1", "v2")), Rollback(), KNOWN)
    assert d.action == "rollback" and d.version == "v2"
    assert d.after == state("v2", history=("v1",))
    assert d.notes == ("dropped canary v2",)
    d2 = decide(d.after, Rollback(), KNOWN)
    assert d2.after == state("v1")


def test_abort_drops_canary_only():
    d = decide(state("v1", "v2", 30, ("v0",)), Abort(), KNOWN)
    assert d.action == "abort" and d.version == "v2"
    assert d.after == state("v1", history=("v0",))


@pytest.mark.parametrize(
    ("start", "command", "message"),
    [
        (state("v1"), Promote("v9", 10), "unknown model version 'v9'"),
        (state("v1"), Promote("v9"), "unknown model version 'v9'"),
        (state("v1"), Promote("v1", 10), "v1 is already the default"),
        (state("v1"), Promote("v1"), "v1 is already the default"),
        (state("v1"), Promote("v2", 0), "canary weight must be 1-99"),
        (state("v1"), Promote("v2", 100), "canary weight must be 1-99"),
        (state("v1"), Promote("v2", -5), "canary weight must be 1-99"),
        (state("v1", "v2", 10), Promote("v2", 10), "already the canary at 10%"),
        (state("v1"), Rollback(), "no previous default to roll back to"),
        (state("v1"), Abort(), "no canary to abort"),
    ],
)
def test_refusals(start, command, message):
    with pytest.raises(PromotionError, match=message.replace("%", "%")):
        decide(start, command, KNOWN)


def test_boundary_weights_are_accepted():
    assert decide(state("v1"), Promote("v2", 1), KNOWN).after.routing.canary_weight == 1
    assert decide(state("v1"), Promote("v2", 99), KNOWN).after.routing.canary_weight == 99


def test_feature_check_names_first_difference():
    check_features(["a", "b"], ["a", "b"], "v2", "v1")
    with pytest.raises(PromotionError, match="v2 takes 3 features but the served v1 takes 2"):
        check_features(["a", "b", "c"], ["a", "b"], "v2", "v1")
    with pytest.raises(PromotionError, match="v2 feature 1 is 'x' but the served v1 has 'b'"):
        check_features(["a", "x"], ["a", "b"], "v2", "v1")


def test_routing_doc_rejects_inconsistent_documents():
    with pytest.raises(ValidationError, match="needs a canary version"):
        RoutingDoc(default="v1", canary_weight=5)
    with pytest.raises(ValidationError, match="also the default"):
        RoutingDoc(default="v1", canary="v1", canary_weight=5)
    with pytest.raises(ValidationError):
        RoutingDoc.model_validate_json('{"default": "v1", "extra": 1}')


def test_every_written_routing_is_accepted_by_the_ranking_service():
    """The ranking service parses what we write (both schemas stay in step)."""
    from cascade_ranking.routing import ModelRouting

    for doc in (RoutingDoc(default="v1"), RoutingDoc(default="v1", canary="v2", canary_weight=37)):
        parsed = ModelRouting.model_validate_json(doc.to_json())
        assert parsed.model_dump() == doc.model_dump()
    assert set(ModelRouting.model_fields) == set(RoutingDoc.model_fields)
