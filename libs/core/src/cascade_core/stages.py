"""Pipeline stage contract (Merlin-operator style with product-mixer slots).

Every service builds its request path from stages placed in fixed, ordered slots::

    sources -> filters -> hydrators -> scorers -> selector -> side_effects

Rules every stage follows:

* a class with a clear ``name`` and declared ``inputs`` / ``outputs`` (column names);
* no I/O in ``__init__``: connect, load models and open stores in ``async initialize()``;
* one ``apply(query, candidates)``:
  - ``Source.apply`` returns new candidates (merged in slot order, first occurrence of an item wins),
  - ``Filter.apply`` returns ``FilterResult(kept, removed)`` (pure, synchronous; ``FilterResult.from_mask``
    builds the removed set only when it is read),
  - ``Hydrator.apply`` returns a dict of new columns, one row per candidate, input order,
  - ``Scorer.apply`` returns one float score per candidate, input order,
  - ``Selector.apply`` returns the final ordered candidates (pure, synchronous),
  - ``SideEffect.apply`` returns nothing and never delays or changes the response;
* ``fail_open = True`` only where a fallback makes sense: the pipeline then catches
  :class:`~cascade_core.errors.UnavailableError` (and deadline expiry) from that stage, records the stage
  as degraded and continues (sources contribute nothing, hydrators use ``fallback()``, scorers keep the
  previous order). Programmer errors always propagate.
"""

from __future__ import annotations

import abc
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
from opentelemetry import trace

from cascade_core.errors import UnavailableError

_tracer = trace.get_tracer("cascade.pipeline")


@dataclass(slots=True)
class Query:
    user_id: str
    num_items: int
    request_id: str
    exclude_item_ids: frozenset[str] = frozenset()
    context: dict[str, str] = field(default_factory=dict)
    # Absolute time.monotonic() deadline of the whole request, if any.
    deadline: float | None = None
    # Per-request values a stage computes for later stages (e.g. the resolved variant).
    params: dict[str, Any] = field(default_factory=dict)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


class CandidateSet:
    """Columnar candidates: ``item_ids`` plus named numpy/list columns, one row per candidate."""

    __slots__ = ("item_ids", "columns")

    def __init__(self, item_ids: Sequence[str], columns: dict[str, Any] | None = None) -> None:
        self.item_ids = list(item_ids)
        self.columns: dict[str, Any] = dict(columns or {})
        for k, v in self.columns.items():
            if len(v) != len(self.item_ids):
                raise ValueError(f"column {k!r} has {len(v)} rows, expected {len(self.item_ids)}")

    @classmethod
    def empty(cls) -> "CandidateSet":
        return cls([], {})

    def __len__(self) -> int:
        return len(self.item_ids)

    def column(self, name: str) -> Any:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(f"candidate column {name!r} missing; present: {sorted(self.columns)}") from None

    def with_columns(self, **cols: Any) -> "CandidateSet":
        merged = dict(self.columns)
        merged.update(cols)
        return CandidateSet(self.item_ids, merged)

    @classmethod
    def _trusted(cls, item_ids: list[str], columns: dict[str, Any]) -> "CandidateSet":
        """From a fresh ``item_ids`` list and columns known to have one row per id (no copy, no check)."""
        self = cls.__new__(cls)
        self.item_ids = item_ids
        self.columns = columns
        return self

    def take(self, idx: Sequence[int] | np.ndarray) -> "CandidateSet":
        idx = np.asarray(idx, dtype=np.int64)
        pos = idx.tolist()  # python ints: indexing lists with numpy scalars is several times slower
        cols = {}
        for k, v in self.columns.items():
            cols[k] = v[idx] if isinstance(v, np.ndarray) else [v[i] for i in pos]
        ids = self.item_ids
        return CandidateSet._trusted([ids[i] for i in pos], cols)

    def head(self, n: int) -> "CandidateSet":
        """The first ``n`` candidates (all of them when there are fewer): ``take(range(n))`` by slicing.

        Numpy columns of the result are views of this set's columns (candidate sets are never
        modified in place).
        """
        if n >= len(self.item_ids):
            return self
        n = max(n, 0)
        return CandidateSet._trusted(self.item_ids[:n], {k: v[:n] for k, v in self.columns.items()})

    def mask(self, keep: np.ndarray) -> tuple["CandidateSet", "CandidateSet"]:
        keep = np.asarray(keep, dtype=bool)
        return self.take(np.flatnonzero(keep)), self.take(np.flatnonzero(~keep))

    @staticmethod
    def concat(parts: Sequence["CandidateSet"]) -> "CandidateSet":
        """Concatenate and de-duplicate by item id (first occurrence wins); columns must agree."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return CandidateSet.empty()
        names = set(parts[0].columns)
        for p in parts[1:]:
            if set(p.columns) != names:
                raise ValueError(f"sources disagree on columns: {sorted(names)} vs {sorted(p.columns)}")
        if len(parts) == 1 and len(set(parts[0].item_ids)) == len(parts[0]):
            return CandidateSet(parts[0].item_ids, parts[0].columns)  # nothing to merge or de-duplicate
        seen: set[str] = set()
        ids: list[str] = []
        picks: list[list[int]] = []  # kept row indices, per part
        for p in parts:
            rows: list[int] = []
            for ri, iid in enumerate(p.item_ids):
                if iid not in seen:
                    seen.add(iid)
                    ids.append(iid)
                    rows.append(ri)
            picks.append(rows)
        cols: dict[str, Any] = {}
        for name in names:
            first = parts[0].columns[name]
            if isinstance(first, np.ndarray):  # one fancy-index per part instead of one scalar per row
                chunks = [
                    np.asarray(p.columns[name])[np.asarray(rows, dtype=np.int64)] for p, rows in zip(parts, picks)
                ]
                cols[name] = np.concatenate(chunks).astype(first.dtype, copy=False)
            else:
                cols[name] = [p.columns[name][ri] for p, rows in zip(parts, picks) for ri in rows]
        return CandidateSet(ids, cols)


class FilterResult:
    """What a filter kept and what it removed.

    ``FilterResult(kept, removed)`` holds both sets. :meth:`from_mask` builds only ``kept`` up front: the
    removed candidates are materialized on first access of :attr:`removed` (metrics and debugging read
    them rarely; :attr:`n_removed` counts them without building them).
    """

    __slots__ = ("kept", "_removed", "_source", "_drop_idx")

    def __init__(self, kept: CandidateSet, removed: CandidateSet) -> None:
        self.kept = kept
        self._removed: CandidateSet | None = removed
        self._source: CandidateSet | None = None
        self._drop_idx: np.ndarray | None = None

    @classmethod
    def unchanged(cls, candidates: CandidateSet) -> "FilterResult":
        """Nothing removed."""
        return cls(candidates, CandidateSet.empty())

    @classmethod
    def from_mask(cls, candidates: CandidateSet, drop: np.ndarray) -> "FilterResult":
        """Remove the candidates where the boolean mask ``drop`` is true (order kept in both sets)."""
        drop = np.asarray(drop, dtype=bool)
        if drop.shape != (len(candidates),):
            raise ValueError(f"drop mask has shape {drop.shape}, expected ({len(candidates)},)")
        drop_idx = np.flatnonzero(drop)
        if not len(drop_idx):
            return cls.unchanged(candidates)
        res = cls(candidates.take(np.flatnonzero(~drop)), CandidateSet.empty())
        res._removed = None
        res._source = candidates
        res._drop_idx = drop_idx
        return res

    @property
    def removed(self) -> CandidateSet:
        if self._removed is None:
            assert self._source is not None and self._drop_idx is not None
            self._removed = self._source.take(self._drop_idx)
            self._source = None
        return self._removed

    @removed.setter
    def removed(self, value: CandidateSet) -> None:
        self._removed, self._source, self._drop_idx = value, None, None

    @property
    def n_removed(self) -> int:
        """How many candidates were removed (without materializing them)."""
        if self._removed is None:
            assert self._drop_idx is not None
            return len(self._drop_idx)
        return len(self._removed)

    def __repr__(self) -> str:
        return f"FilterResult(kept={len(self.kept)} candidates, removed={self.n_removed} candidates)"


class Stage(abc.ABC):
    name: ClassVar[str] = "stage"
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    fail_open: ClassVar[bool] = False

    async def initialize(self) -> None:  # connect / load here, never in __init__
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> str:
        io = ""
        if self.inputs or self.outputs:
            io = f" ({', '.join(self.inputs) or '-'} -> {', '.join(self.outputs) or '-'})"
        return f"{self.name}{io}{' [fail-open]' if self.fail_open else ''}"


class Source(Stage):
    @abc.abstractmethod
    async def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet: ...


class Filter(Stage):
    @abc.abstractmethod
    def apply(self, query: Query, candidates: CandidateSet) -> FilterResult: ...


class Hydrator(Stage):
    @abc.abstractmethod
    async def apply(self, query: Query, candidates: CandidateSet) -> dict[str, Any]: ...

    def fallback(self, query: Query, candidates: CandidateSet) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name} declares fail_open but has no fallback()")


class Scorer(Stage):
    @abc.abstractmethod
    async def apply(self, query: Query, candidates: CandidateSet) -> np.ndarray: ...


class Selector(Stage):
    @abc.abstractmethod
    def apply(self, query: Query, candidates: CandidateSet) -> CandidateSet: ...


class SideEffect(Stage):
    @abc.abstractmethod
    async def apply(self, query: Query, candidates: CandidateSet) -> None: ...


@dataclass(slots=True)
class PipelineResult:
    candidates: CandidateSet
    degraded_stages: list[str] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Each scorer's output, by stage name (the last one is also the "score" column).
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_stages)


_FAIL_OPEN_ERRORS = (UnavailableError, asyncio.TimeoutError, TimeoutError)


class Pipeline:
    """Runs stages in the fixed slot order. Side effects are scheduled, never awaited."""

    SLOTS = ("sources", "filters", "hydrators", "scorers", "selector", "side_effects")

    def __init__(
        self,
        name: str,
        *,
        sources: Sequence[Source],
        filters: Sequence[Filter] = (),
        hydrators: Sequence[Hydrator] = (),
        scorers: Sequence[Scorer] = (),
        selector: Selector,
        side_effects: Sequence[SideEffect] = (),
        fallback_sources: Sequence[Source] = (),
    ) -> None:
        if not sources:
            raise ValueError("a pipeline needs at least one source")
        self.name = name
        self.sources = list(sources)
        self.fallback_sources = list(fallback_sources)
        self.filters = list(filters)
        self.hydrators = list(hydrators)
        self.scorers = list(scorers)
        self.selector = selector
        self.side_effects = list(side_effects)
        self._background: set[asyncio.Task] = set()

    def stages(self) -> list[Stage]:
        return [
            *self.sources, *self.fallback_sources, *self.filters, *self.hydrators,
            *self.scorers, self.selector, *self.side_effects,
        ]

    async def initialize(self) -> None:
        for s in self.stages():
            await s.initialize()

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        for s in self.stages():
            await s.close()

    def tree(self) -> str:
        """Printable tree of the pipeline, home-mixer style."""
        lines = [f"{self.name}"]
        groups: list[tuple[str, list[Stage]]] = [
            ("sources", list(self.sources)),
            ("fallback sources (only when every source failed or returned nothing)", list(self.fallback_sources)),
            ("filters", list(self.filters)),
            ("hydrators", list(self.hydrators)),
            ("scorers", list(self.scorers)),
            ("selector", [self.selector]),
            ("side effects", list(self.side_effects)),
        ]
        groups = [(g, s) for g, s in groups if s]
        for gi, (gname, stages) in enumerate(groups):
            last_g = gi == len(groups) - 1
            lines.append(f"{'└──' if last_g else '├──'} {gname}")
            for si, st in enumerate(stages):
                pre = "    " if last_g else "│   "
                lines.append(f"{pre}{'└──' if si == len(stages) - 1 else '├──'} {st.describe()}")
        return "\n".join(lines)

    async def _run_stage(self, stage: Stage, coro, result: PipelineResult):
        t0 = time.perf_counter()
        # One span per async stage (a no-op tracer unless tracing is configured).
        with _tracer.start_as_current_span(f"{self.name}/{stage.name}") as span:
            try:
                return await coro, True
            except _FAIL_OPEN_ERRORS as e:
                if not stage.fail_open:
                    raise
                span.set_attribute("cascade.fallback", True)
                span.set_attribute("cascade.fallback_reason", type(e).__name__)
                result.degraded_stages.append(stage.name)
                return None, False
            finally:
                result.stage_seconds[stage.name] = time.perf_counter() - t0

    async def run(self, query: Query) -> PipelineResult:
        result = PipelineResult(CandidateSet.empty())
        outs = await self._run_sources(self.sources, query, result)
        return await self._run_after_sources(query, outs, result)

    async def _run_sources(
        self, sources: Sequence[Source], query: Query, result: PipelineResult
    ) -> list[tuple[CandidateSet | None, bool]]:
        """``(output, ok)`` per source in declaration order: run concurrently (one source: awaited directly,
        no Task)."""
        empty = CandidateSet.empty()
        if len(sources) == 1:
            s0 = sources[0]
            return [await self._run_stage(s0, s0.apply(query, empty), result)]
        outs = await asyncio.gather(*(self._run_stage(s, s.apply(query, empty), result) for s in sources))
        return list(outs)

    async def _run_after_sources(
        self, query: Query, outs: list[tuple[CandidateSet | None, bool]], result: PipelineResult
    ) -> PipelineResult:
        """Merge the sources' outputs (fallback sources when that is empty), then the remaining slots."""
        cands = CandidateSet.concat([o for o, ok in outs if ok and o is not None])
        if not len(cands) and self.fallback_sources:
            empty = CandidateSet.empty()
            outs = await asyncio.gather(
                *(self._run_stage(s, s.apply(query, empty), result) for s in self.fallback_sources)
            )
            cands = CandidateSet.concat([o for o, ok in outs if ok and o is not None])
        for f in self.filters:
            t0 = time.perf_counter()
            fr = f.apply(query, cands)
            result.stage_seconds[f.name] = time.perf_counter() - t0
            result.removed[f.name] = fr.n_removed
            cands = fr.kept
        for h in self.hydrators:
            cols, ok = await self._run_stage(h, h.apply(query, cands), result)
            if not ok:
                cols = h.fallback(query, cands)
            cands = cands.with_columns(**cols)
        for sc in self.scorers:
            scores, ok = await self._run_stage(sc, sc.apply(query, cands), result)
            if ok:
                scores = np.asarray(scores, dtype=np.float32)
                if scores.shape != (len(cands),):
                    raise ValueError(
                        f"scorer {sc.name} returned shape {scores.shape}, expected ({len(cands)},)"
                    )
                result.scores[sc.name] = scores
                cands = cands.with_columns(score=scores)
        t0 = time.perf_counter()
        cands = self.selector.apply(query, cands)
        result.stage_seconds[self.selector.name] = time.perf_counter() - t0
        for se in self.side_effects:
            task = asyncio.ensure_future(se.apply(query, cands))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        result.candidates = cands
        return result
