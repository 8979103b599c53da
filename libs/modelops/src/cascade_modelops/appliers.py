"""Where the ranking routing lives, and how a decided change is applied to it.

A :class:`RoutingApplier` reads the current :class:`RolloutState` and applies a change as one
read-decide-write step that concurrent operators cannot interleave:

* :class:`LocalFileApplier` — the ranking service's routing file (``CASCADE_MODEL_ROUTING_FILE``),
  replaced atomically (temp file + rename, so the service never reads half a file) under an
  exclusive ``flock``; rollback history in ``<file>.history.json`` next to it;
* :class:`ConfigMapApplier` — the Kubernetes ConfigMap the ranking pods mount as their routing file
  (:mod:`cascade_modelops.kube`).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from cascade_modelops.promotion import MAX_HISTORY, Decision, RolloutState
from cascade_modelops.routing import RoutingDoc


class RoutingStateError(RuntimeError):
    """The routing state cannot be read or written; the message names what to fix."""


@dataclass(frozen=True)
class ChangeMeta:
    """Who applies a change and when (recorded next to the routing: history file, annotations)."""

    actor: str
    ts: str


Change = Callable[[RolloutState], Decision]


class RoutingApplier(Protocol):
    target: str  # human/audit description: file:/path or configmap:namespace/name

    def read(self) -> RolloutState: ...

    def update(self, change: Change, meta: ChangeMeta) -> Decision:
        """Read the current state, ``change(state)`` it (may raise), write the result; atomically."""
        ...


def parse_routing(raw: str | bytes, where: str) -> RoutingDoc:
    try:
        return RoutingDoc.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "document"
        raise RoutingStateError(f"{where} is not a valid routing document ({loc}: {first['msg']}); fix or "
                                'rewrite it as {"default": "<version>"}') from None


def parse_history(raw: str, where: str) -> tuple[str, ...]:
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise RoutingStateError(f"{where} is not JSON ({e}); delete it to start a new rollback history") from None
    history = doc.get("history") if isinstance(doc, dict) else doc
    if not isinstance(history, list) or not all(isinstance(v, str) and v for v in history):
        raise RoutingStateError(f"{where}: history must be a list of version ids; delete it to start afresh")
    return tuple(history[-MAX_HISTORY:])


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (readers see the old or the new file, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class LocalFileApplier:
    """The routing file the local ranking service polls, plus its rollback history file."""

    def __init__(self, routing_file: Path | str) -> None:
        self.routing_file = Path(routing_file).resolve()
        self.history_file = self.routing_file.with_name(self.routing_file.name + ".history.json")
        self._lock_file = self.routing_file.with_name(f".{self.routing_file.name}.lock")
        self.target = f"file:{self.routing_file}"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_file, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def read(self) -> RolloutState:
        try:
            raw = self.routing_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RoutingStateError(
                f"routing file {self.routing_file} does not exist: start the platform with `make up` (it writes "
                "one) or point CASCADE_MODEL_ROUTING_FILE / --routing-file at the ranking service's routing file"
            ) from None
        routing = parse_routing(raw, f"routing file {self.routing_file}")
        history: tuple[str, ...] = ()
        if self.history_file.is_file():
            history = parse_history(self.history_file.read_text(encoding="utf-8"), str(self.history_file))
        return RolloutState(routing, history)

    def update(self, change: Change, meta: ChangeMeta) -> Decision:
        with self._locked():
            decision = change(self.read())
            after = decision.after
            atomic_write(self.history_file, json.dumps({
                "history": list(after.history), "changed_by": meta.actor, "changed_at": meta.ts,
                "last_action": decision.action, "summary": decision.summary,
            }, indent=2) + "\n")
            atomic_write(self.routing_file, after.routing.to_json())  # last: this is what the service acts on
        return decision

    def initialize(self, default: str) -> RolloutState:
        """Start a fresh rollout: ``default`` serves 100 %, no history (``make up`` does this)."""
        with self._locked():
            state = RolloutState(RoutingDoc(default=default))
            self.history_file.unlink(missing_ok=True)
            atomic_write(self.routing_file, state.routing.to_json())
        return state
