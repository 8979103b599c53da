"""Pure promotion logic: (current rollout state, command) -> the next state, or a refusal.

No I/O here: callers read the state (routing file or ConfigMap), ask :func:`decide`, and write the
result. Rules:

* ``Promote(v, canary_weight=w)`` — ``v`` takes ``w`` % of ranking traffic (1-99) next to the current
  default; a different existing canary is replaced, the same one is re-weighted;
* ``Promote(v)`` (full) — ``v`` becomes the default, any canary is dropped, and the old default is
  pushed on the history (what ``rollback`` returns to);
* ``Rollback()`` — the most recent previous default serves everything again (canary dropped);
* ``Abort()`` — the canary is dropped, the default keeps serving.

Refused (``PromotionError``, message says what to do): an unknown version, promoting the current
default, a canary weight outside 1-99, a change that changes nothing, rollback with no history,
abort with no canary, a ranker whose feature names differ from the served one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cascade_modelops.routing import RoutingDoc

MAX_HISTORY = 20  # previous defaults kept for rollback (a ConfigMap annotation must stay small)
Action = Literal["promote-canary", "promote-full", "rollback", "abort"]


class PromotionError(ValueError):
    """A command that must not change routing; the message names the fix."""


@dataclass(frozen=True)
class RolloutState:
    routing: RoutingDoc
    history: tuple[str, ...] = ()  # previous defaults, oldest first


@dataclass(frozen=True)
class Promote:
    version: str
    canary_weight: int | None = None  # None: full promotion


@dataclass(frozen=True)
class Rollback:
    pass


@dataclass(frozen=True)
class Abort:
    pass


Command = Promote | Rollback | Abort


@dataclass(frozen=True)
class Decision:
    action: Action
    before: RolloutState
    after: RolloutState
    version: str  # the version the action is about (promoted, rolled back to, or aborted)
    summary: str
    notes: tuple[str, ...] = field(default=())

    @property
    def aliases(self) -> dict[str, str | None]:
        """MLflow aliases after the change (None: remove the alias)."""
        return {"production": self.after.routing.default, "canary": self.after.routing.canary}


def decide(state: RolloutState, command: Command, known_versions: Collection[str]) -> Decision:
    """The state ``command`` leads to from ``state``; raises :class:`PromotionError` when refused."""
    routing = state.routing
    if isinstance(command, Promote):
        v = command.version
        if v not in known_versions:
            shown = ", ".join(sorted(known_versions)[-5:]) or "none"
            raise PromotionError(f"unknown model version {v!r}: not in the registry (known: {shown})")
        if v == routing.default:
            raise PromotionError(f"{v} is already the default (serving {routing.describe()}); nothing to promote")
        if command.canary_weight is not None:
            return _canary(state, v, command.canary_weight)
        return _full(state, v)
    if isinstance(command, Rollback):
        if not state.history:
            raise PromotionError(
                f"no previous default to roll back to (serving {routing.describe()}); "
                "rollback needs an earlier full promotion"
            )
        previous = state.history[-1]
        after = RolloutState(RoutingDoc(default=previous), state.history[:-1])
        notes = (f"dropped canary {routing.canary}",) if routing.canary else ()
        return Decision("rollback", state, after, previous,
                        f"rolled back ranker default {routing.default} -> {previous}", notes)
    if isinstance(command, Abort):
        if not routing.canary:
            raise PromotionError(f"no canary to abort (serving {routing.describe()})")
        after = RolloutState(RoutingDoc(default=routing.default), state.history)
        return Decision("abort", state, after, routing.canary,
                        f"aborted canary {routing.canary}; {routing.default} serves 100%")
    raise TypeError(f"unknown command {command!r}")


def _canary(state: RolloutState, v: str, weight: int) -> Decision:
    routing = state.routing
    if not 1 <= weight <= 99:
        raise PromotionError(
            f"canary weight must be 1-99 (percent of ranking traffic), got {weight}; use --full to send 100%"
        )
    if routing.canary == v and routing.canary_weight == weight:
        raise PromotionError(f"{v} is already the canary at {weight}%; nothing to change")
    notes = (f"replaced canary {routing.canary}",) if routing.canary and routing.canary != v else ()
    after = RolloutState(RoutingDoc(default=routing.default, canary=v, canary_weight=weight), state.history)
    return Decision("promote-canary", state, after, v,
                    f"canary {v} at {weight}% next to default {routing.default}", notes)


def _full(state: RolloutState, v: str) -> Decision:
    routing = state.routing
    history = (*state.history, routing.default)[-MAX_HISTORY:]
    notes = (f"dropped canary {routing.canary}",) if routing.canary and routing.canary != v else ()
    after = RolloutState(RoutingDoc(default=v), history)
    return Decision("promote-full", state, after, v, f"promoted {v} to default (was {routing.default})", notes)


def check_features(candidate: Sequence[str], served: Sequence[str], version: str, served_version: str) -> None:
    """Refuse a ranker whose feature names (order included) differ from the served version's.

    The router packs feature matrices in the served manifest's order and the ranking service rejects
    mismatching names, so such a version would fail every request it gets.
    """
    if list(candidate) == list(served):
        return
    if len(candidate) != len(served):
        raise PromotionError(
            f"{version} takes {len(candidate)} features but the served {served_version} takes {len(served)}: "
            "retrain it with the served feature layout (or change the layout for every service first)"
        )
    i = next(i for i, (a, b) in enumerate(zip(candidate, served)) if a != b)
    raise PromotionError(
        f"{version} feature {i} is {candidate[i]!r} but the served {served_version} has {served[i]!r}: "
        "retrain it with the served feature layout"
    )
