"""Model-operation use cases: validate, decide, apply, record.

:class:`ModelOps` joins the pieces the ``cascade models`` CLI and ``kubectl cascade`` share:

1. validate against the registry (the version exists, its ranker file is there, its ranker is the
   named model, its feature names equal the served default's) — a version must be loadable before
   any traffic moves to it;
2. decide with :func:`cascade_modelops.promotion.decide` (pure);
3. apply through a :class:`~cascade_modelops.appliers.RoutingApplier` (routing file or ConfigMap);
4. record: MLflow aliases (``production``/``canary``; a failure is reported, the routing change
   stands and ``cascade models sync`` repairs the aliases) and one audit-log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cascade_core.errors import NotFoundError
from cascade_core.registry import Registry

from cascade_modelops.appliers import ChangeMeta, RoutingApplier
from cascade_modelops.audit import AuditLog, AuditRecord, default_actor, now_iso
from cascade_modelops.promotion import (
    Abort,
    Command,
    Decision,
    Promote,
    PromotionError,
    Rollback,
    RolloutState,
    check_features,
    decide,
)

RANKER = "ranker"


class AliasTracker(Protocol):
    """Where model-version aliases are mirrored (MLflow); see :mod:`cascade_modelops.mlflow_sync`."""

    def set_aliases(self, model: str, aliases: dict[str, str | None], registry: Registry) -> None: ...


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    record: AuditRecord
    tracking_error: str | None = None


class ModelOps:
    def __init__(self, registry: Registry, applier: RoutingApplier, audit: AuditLog,
                 tracker: AliasTracker | None = None, actor: str | None = None) -> None:
        self.registry = registry
        self.applier = applier
        self.audit = audit
        self.tracker = tracker
        self.actor = actor or default_actor()

    def state(self) -> RolloutState:
        return self.applier.read()

    def promote(self, model: str, version: str, canary_weight: int | None = None) -> Outcome:
        return self._run(model, Promote(version, canary_weight))

    def rollback(self, model: str) -> Outcome:
        return self._run(model, Rollback())

    def abort(self, model: str) -> Outcome:
        return self._run(model, Abort())

    # -- internals -------------------------------------------------------------------------------
    def _validate(self, model: str, command: Command, state: RolloutState) -> None:
        if model != RANKER:
            raise PromotionError(f"unknown model {model!r}: the ranking service routes only {RANKER!r}")
        if not isinstance(command, Promote):
            return
        version = command.version
        try:
            self.registry.resolve(version)
            manifest = self.registry.manifest(version)
        except NotFoundError as e:
            raise PromotionError(f"cannot promote: {e}") from None
        if manifest.ranker.name != model:
            raise PromotionError(f"{version}'s ranker is named {manifest.ranker.name!r}, not {model!r}")
        ranker_file = self.registry.path(version) / manifest.files.ranker
        if not ranker_file.is_file():
            raise PromotionError(f"{version} is not loadable: {ranker_file} is missing")
        served = state.routing.default
        try:
            served_manifest = self.registry.manifest(served)
        except NotFoundError:
            raise PromotionError(
                f"the served default {served!r} is not in the registry {self.registry.registry_dir}: point "
                "CASCADE_ARTIFACTS_DIR (or --artifacts) at the registry the ranking service loads from") from None
        check_features(manifest.ranker.feature_names, served_manifest.ranker.feature_names, version, served)

    def _run(self, model: str, command: Command) -> Outcome:
        meta = ChangeMeta(self.actor, now_iso())

        def change(state: RolloutState) -> Decision:
            self._validate(model, command, state)
            return decide(state, command, self.registry.versions())

        decision = self.applier.update(change, meta)
        tracking_error: str | None = None
        if self.tracker is not None:
            try:
                self.tracker.set_aliases(model, decision.aliases, self.registry)
            except Exception as e:  # noqa: BLE001 - routing already changed; report, `models sync` repairs
                tracking_error = f"{type(e).__name__}: {e}"
        details: dict = {"notes": list(decision.notes), "history": list(decision.after.history)}
        details["mlflow"] = ("disabled" if self.tracker is None else
                             "aliases updated" if tracking_error is None else f"error: {tracking_error}")
        record = AuditRecord(
            actor=meta.actor, action=decision.action, model=model, version=decision.version,
            target=self.applier.target, summary=decision.summary, ts=meta.ts,
            before=decision.before.routing.model_dump(), after=decision.after.routing.model_dump(),
            details=details,
        )
        self.audit.append(record)
        return Outcome(decision, record, tracking_error)
