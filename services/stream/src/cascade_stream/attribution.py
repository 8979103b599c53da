"""Online click attribution: ``python -m cascade_stream.attribution`` (its own process; metrics on 9106).

Joins the router's **exposure events** (topic ``exposures``, one per Recommend response:
``request_id``, ``experiment``, ``variant``, ``model_version``, ``items``, ``positions``, ``forced``,
``ts``; see ``cascade_router.exposures``) with the storefront's **user events** (``user-events``,
optional ``request_id``) and counts, per ``(experiment, variant, model_version)``:

``cascade_recommend_impressions_total``
    one per exposure, i.e. per response shown (not per item): CTR = clicks / impressions is
    "attributed clicks per recommendation list", the same definition as ``cascade experiments report``'s
    numerator over exposures;
``cascade_recommend_clicks_total`` / ``_add_to_carts_total`` / ``_purchases_total``
    events whose ``request_id`` names an exposure seen within the attribution window **and** whose
    ``item_id`` was in that response; each (request, item, event type) counts once (repeat clicks on
    the same item of the same list are ``repeat``, not clicks);
``cascade_recommend_unattributed_clicks_total{reason}``
    clicks that could not be attributed: ``no_request_id``, ``unknown_request`` (no exposure arrived
    within ``pending_grace_s`` — lost, expired or evicted), ``item_not_shown``, ``outside_window``
    (event time more than the window after the exposure), ``stale`` (the click itself is older than the
    window when processed: consumer lag or old history).

QA-forced exposures (``forced=true``) are kept out of both sides (``cascade experiments report`` leaves
them out too). Impressions and views from ``user-events`` are ignored (the exposure is the impression).

**Ordering.** Exposures are logged asynchronously by the router, so an event may be consumed before
its exposure: events with an unknown ``request_id`` are held for ``pending_grace_s`` (default 30 s,
at most ``max_pending``) and attributed when the exposure arrives, else counted ``unknown_request``.

**State.** ``request_id -> (experiment, variant, model_version, item positions)`` in an LRU map capped
at ``max_exposures``; an entry expires ``window_s`` after the exposure's time. Event ids are remembered
for the window (capped at ``max_event_ids``) to drop redeliveries.

**Delivery.** Counters cannot be un-incremented, so the process counts first and commits offsets after
(at-least-once): a redelivery within the process lifetime is dropped by ``event_id`` (exposures by
``request_id``); after a crash the events between the last commit and the crash are counted again by
the next process (Prometheus sees a counter reset, then the re-counts — bounded by the commit interval
plus the pending grace, because the commit of a user-events partition never passes an event still held
as pending; the same holds for a rebalance, whose callbacks cannot commit). On every assignment the
exposures of the last ``window_s`` before the committed offset
are re-read into the map **without** counting impressions, so clicks on responses shown before a
restart or rebalance are still attributed.

**Scaling.** One consumer group (``CASCADE_GROUP_ID``, default ``cascade-attribution``) subscribed to
both topics. Both are keyed by ``user_id`` with the same (kafka-python murmur2) partitioner, so with the
same partition count the default range assignor gives a replica the same partitions of both topics:
the join is partition-local and replicas scale up to the partition count. Different partition counts
need one replica.

Configuration (env, ``CASCADE_`` prefix): :class:`AttributionSettings`.
"""

from __future__ import annotations

import heapq
import json
import logging
import signal
import sys
import threading
import time
from collections import Counter as TallyCounter
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cascade_platform.settings import ServiceSettings
from prometheus_client import Counter, Gauge
from pydantic import Field

from cascade_stream.settings import KafkaConfig, TopicConfig

log = logging.getLogger("cascade.stream.attribution")

ACTIONS = ("click", "add_to_cart", "purchase")
IGNORED_TYPES = ("impression", "view")
OTHER = "_other"
MAX_LABEL_CHARS = 128

# -- metrics (names are a deployment contract: the chart's cascade-ctr AnalysisTemplate queries them) --
_LABELS = ["experiment", "variant", "model_version"]
IMPRESSIONS = Counter(
    "cascade_recommend_impressions_total",
    "Recommendation lists shown (one per exposure event, QA-forced ones excluded).",
    _LABELS,
)
CLICKS = Counter(
    "cascade_recommend_clicks_total",
    "Clicks attributed to a shown list (request_id known, item in the list, within the window).",
    _LABELS,
)
ADD_TO_CARTS = Counter(
    "cascade_recommend_add_to_carts_total", "Add-to-cart events attributed to a shown list.", _LABELS
)
PURCHASES = Counter("cascade_recommend_purchases_total", "Purchases attributed to a shown list.", _LABELS)
UNATTRIBUTED_CLICKS = Counter(
    "cascade_recommend_unattributed_clicks_total",
    "Clicks not attributed: no_request_id, unknown_request, item_not_shown, outside_window, stale.",
    ["reason"],
)
EVENTS = Counter(
    "cascade_attribution_events_total",
    "User events processed by the attribution join, by event type and outcome.",
    ["event_type", "outcome"],
)
EXPOSURES = Counter(
    "cascade_attribution_exposures_total",
    "Exposure events processed: counted, duplicate, forced, stale, invalid, replayed (after an assignment).",
    ["outcome"],
)
EVICTIONS = Counter(
    "cascade_attribution_evictions_total", "Exposures dropped from the join map.", ["reason"]
)
TRACKED = Gauge("cascade_attribution_exposures_tracked", "Exposures held in the join map.")
PENDING = Gauge("cascade_attribution_pending_events", "Events waiting for their exposure.")
ASSIGNED = Gauge("cascade_attribution_assigned_partitions", "Partitions owned, by topic.", ["topic"])
_ACTION_COUNTERS = {"click": CLICKS, "add_to_cart": ADD_TO_CARTS, "purchase": PURCHASES}


class Sink(Protocol):
    """Where the join's outcomes go (Prometheus in the process, a tally in unit tests)."""

    def impression(self, labels: tuple[str, str, str]) -> None: ...
    def action(self, event_type: str, labels: tuple[str, str, str]) -> None: ...
    def unattributed(self, event_type: str, reason: str) -> None: ...
    def event(self, event_type: str, outcome: str) -> None: ...
    def exposure(self, outcome: str) -> None: ...
    def evicted(self, reason: str) -> None: ...


class PrometheusSink:
    def impression(self, labels: tuple[str, str, str]) -> None:
        IMPRESSIONS.labels(*labels).inc()

    def action(self, event_type: str, labels: tuple[str, str, str]) -> None:
        _ACTION_COUNTERS[event_type].labels(*labels).inc()

    def unattributed(self, event_type: str, reason: str) -> None:
        if event_type == "click":
            UNATTRIBUTED_CLICKS.labels(reason).inc()

    def event(self, event_type: str, outcome: str) -> None:
        EVENTS.labels(event_type, outcome).inc()

    def exposure(self, outcome: str) -> None:
        EXPOSURES.labels(outcome).inc()

    def evicted(self, reason: str) -> None:
        EVICTIONS.labels(reason).inc()


@dataclass
class TallySink:
    """In-memory counts with the same keys as the Prometheus series (tests, tools)."""

    counts: TallyCounter = field(default_factory=TallyCounter)

    def impression(self, labels: tuple[str, str, str]) -> None:
        self.counts[("impressions", *labels)] += 1

    def action(self, event_type: str, labels: tuple[str, str, str]) -> None:
        self.counts[(event_type, *labels)] += 1

    def unattributed(self, event_type: str, reason: str) -> None:
        self.counts[("unattributed", event_type, reason)] += 1

    def event(self, event_type: str, outcome: str) -> None:
        self.counts[("event", event_type, outcome)] += 1

    def exposure(self, outcome: str) -> None:
        self.counts[("exposure", outcome)] += 1

    def evicted(self, reason: str) -> None:
        self.counts[("evicted", reason)] += 1


# -- the join (pure: no Kafka, injected clock) ----------------------------------------------------
@dataclass
class Exposure:
    labels: tuple[str, str, str]
    items: frozenset[str]
    ts_ms: int
    forced: bool
    expires_at: float
    done: set[tuple[str, str]] = field(default_factory=set)  # (item_id, event_type) already counted


@dataclass(frozen=True)
class Action:
    """The part of a user event the join needs."""

    event_id: str
    event_type: str
    item_id: str
    ts_ms: int
    request_id: str | None = None


@dataclass
class _Pending:
    action: Action
    deadline: float
    where: Any  # caller's position token (partition, offset) to hold the commit back


class InvalidExposure(ValueError):
    pass


def parse_exposure(doc: Any) -> str:
    """Check an exposure document has what the join needs; returns its ``request_id``."""
    if not isinstance(doc, dict):
        raise InvalidExposure("payload: must be a JSON object")
    rid = doc.get("request_id")
    if not isinstance(rid, str) or not rid:
        raise InvalidExposure("request_id: required non-empty string")
    items = doc.get("items")
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InvalidExposure("items: required list of strings")
    ts = doc.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise InvalidExposure("ts: required epoch milliseconds")
    return rid


def _label(v: Any) -> str:
    s = "" if v is None else str(v)
    return s[:MAX_LABEL_CHARS]


class Attributor:
    """request_id -> exposure map with TTL + LRU cap, event-id de-duplication and a pending buffer.

    All times: ``clock()`` in seconds (wall clock: exposure and event times are epoch ms). Call
    :meth:`expire` regularly (the process does after every poll): it drops expired exposures and
    event ids and resolves pending events whose grace has passed.
    """

    def __init__(
        self,
        *,
        window_s: float = 1800.0,
        max_exposures: int = 200_000,
        pending_grace_s: float = 30.0,
        max_pending: int = 50_000,
        max_event_ids: int = 1_000_000,
        max_label_sets: int = 100,
        clock: Callable[[], float] = time.time,
        sink: Sink | None = None,
    ) -> None:
        self.window_s = window_s
        self.window_ms = int(window_s * 1000)
        self.max_exposures = max_exposures
        self.grace_s = pending_grace_s
        self.max_pending = max_pending
        self.max_event_ids = max_event_ids
        self.max_label_sets = max_label_sets
        self.clock = clock
        self.sink: Sink = sink if sink is not None else PrometheusSink()
        self._exposures: OrderedDict[str, Exposure] = OrderedDict()  # LRU order
        self._expiry: list[tuple[float, str]] = []  # heap of (expires_at, request_id)
        self._event_ids: OrderedDict[str, float] = OrderedDict()  # event_id -> forget at
        self._pending: OrderedDict[str, _Pending] = OrderedDict()  # event_id -> pending (arrival order)
        self._pending_by_request: dict[str, list[str]] = {}
        self._label_sets: set[tuple[str, str, str]] = set()

    # -- inspection ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._exposures)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def pending_positions(self) -> list[Any]:
        return [p.where for p in self._pending.values()]

    def labels_of(self, experiment: Any, variant: Any, model_version: Any) -> tuple[str, str, str]:
        """The label set of an exposure, or ``_other`` x3 once ``max_label_sets`` distinct ones exist."""
        labels = (_label(experiment), _label(variant), _label(model_version))
        if labels in self._label_sets:
            return labels
        if len(self._label_sets) >= self.max_label_sets:
            return (OTHER, OTHER, OTHER)
        self._label_sets.add(labels)
        return labels

    # -- exposures ----------------------------------------------------------------------------
    def add_exposure(self, doc: Any, *, count: bool = True) -> str:
        """Record one exposure; ``count=False`` (replay after an assignment) adds it without counting
        an impression. Returns the outcome (``counted``, ``replayed``, ``duplicate``, ``forced``,
        ``stale``, ``invalid``) and resolves events that were waiting for it."""
        try:
            rid = parse_exposure(doc)
        except InvalidExposure as e:
            log.debug("invalid exposure: %s", e)
            return self._exposure_outcome("invalid")
        now = self.clock()
        ts_ms = int(doc["ts"])
        expires_at = min(ts_ms / 1000.0, now) + self.window_s
        if expires_at <= now:
            return self._exposure_outcome("stale")
        if rid in self._exposures:
            return self._exposure_outcome("duplicate")
        forced = bool(doc.get("forced", False))
        labels = (
            (OTHER, OTHER, OTHER)
            if forced
            else self.labels_of(doc.get("experiment"), doc.get("variant"), doc.get("model_version"))
        )
        exp = Exposure(labels, frozenset(doc["items"]), ts_ms, forced, expires_at)
        self._exposures[rid] = exp
        heapq.heappush(self._expiry, (expires_at, rid))
        while len(self._exposures) > self.max_exposures:
            self._exposures.popitem(last=False)
            self.sink.evicted("capacity")
        if forced:
            outcome = "forced"
        elif count:
            self.sink.impression(labels)
            outcome = "counted"
        else:
            outcome = "replayed"
        self._exposure_outcome(outcome)
        for eid in self._pending_by_request.pop(rid, []):
            p = self._pending.pop(eid, None)
            if p is not None:
                self._remember(eid, now)
                self._join(p.action, exp)
        return outcome

    def _exposure_outcome(self, outcome: str) -> str:
        self.sink.exposure(outcome)
        return outcome

    # -- events -------------------------------------------------------------------------------
    def add_event(self, a: Action, where: Any = None) -> str:
        """Join one user event. Returns its outcome: ``attributed``, ``pending`` (held until its
        exposure arrives or the grace passes), ``duplicate``, ``ignored``, ``repeat``, ``forced`` or an
        unattributed reason."""
        if a.event_type not in ACTIONS:
            return self._event_outcome(a, "ignored")
        now = self.clock()
        if a.event_id in self._event_ids or a.event_id in self._pending:
            return self._event_outcome(a, "duplicate")
        exp = None
        if not a.request_id:
            outcome = "no_request_id"
        elif a.ts_ms / 1000.0 + self.window_s <= now:
            outcome = "stale"
        else:
            exp = self._lookup(a.request_id, now)
            outcome = "" if exp is not None else "pending"
        if outcome != "pending":
            self._remember(a.event_id, now)
            if exp is not None:
                return self._join(a, exp)
            return self._unattributed(a, outcome)
        # the exposure may still be on its way (logged asynchronously): hold the event
        self._pending[a.event_id] = _Pending(a, now + self.grace_s, where)
        self._pending_by_request.setdefault(a.request_id, []).append(a.event_id)
        while len(self._pending) > self.max_pending:
            _, oldest = self._pending.popitem(last=False)
            self._resolve_unknown(oldest)
        return "pending"  # counted in cascade_attribution_events_total once resolved

    def _remember(self, event_id: str, now: float) -> None:
        self._event_ids[event_id] = now + self.window_s
        while len(self._event_ids) > self.max_event_ids:
            self._event_ids.popitem(last=False)

    def _lookup(self, rid: str, now: float) -> Exposure | None:
        exp = self._exposures.get(rid)
        if exp is None:
            return None
        if exp.expires_at <= now:
            del self._exposures[rid]
            self.sink.evicted("expired")
            return None
        self._exposures.move_to_end(rid)
        return exp

    def _join(self, a: Action, exp: Exposure) -> str:
        if exp.forced:
            return self._event_outcome(a, "forced")
        if a.item_id not in exp.items:
            return self._unattributed(a, "item_not_shown")
        if a.ts_ms > exp.ts_ms + self.window_ms:
            return self._unattributed(a, "outside_window")
        key = (a.item_id, a.event_type)
        if key in exp.done:
            return self._event_outcome(a, "repeat")
        exp.done.add(key)
        self.sink.action(a.event_type, exp.labels)
        return self._event_outcome(a, "attributed")

    def _unattributed(self, a: Action, reason: str) -> str:
        self.sink.unattributed(a.event_type, reason)
        return self._event_outcome(a, reason)

    def _event_outcome(self, a: Action, outcome: str) -> str:
        self.sink.event(a.event_type, outcome)
        return outcome

    def _resolve_unknown(self, p: _Pending) -> None:
        ids = self._pending_by_request.get(p.action.request_id or "")
        if ids is not None:
            try:
                ids.remove(p.action.event_id)
            except ValueError:
                pass
            if not ids:
                del self._pending_by_request[p.action.request_id or ""]
        self._remember(p.action.event_id, self.clock())
        self._unattributed(p.action, "unknown_request")

    def drop_pending(self, keep: Callable[[Any], bool]) -> int:
        """Forget pending events whose position fails ``keep`` (revoked partitions: the next owner
        re-reads them from the committed offset). Returns how many were dropped."""
        gone = [eid for eid, p in self._pending.items() if not keep(p.where)]
        for eid in gone:
            p = self._pending.pop(eid)
            ids = self._pending_by_request.get(p.action.request_id or "", [])
            if eid in ids:
                ids.remove(eid)
                if not ids:
                    self._pending_by_request.pop(p.action.request_id or "", None)
        return len(gone)

    # -- time -----------------------------------------------------------------------------------
    def expire(self) -> None:
        now = self.clock()
        while self._expiry and self._expiry[0][0] <= now:
            at, rid = heapq.heappop(self._expiry)
            exp = self._exposures.get(rid)
            if exp is not None and exp.expires_at == at:
                del self._exposures[rid]
                self.sink.evicted("expired")
        # the heap also holds entries evicted for capacity: keep it from growing without bound
        if len(self._expiry) > 2 * self.max_exposures + 1024:
            self._expiry = [(e.expires_at, r) for r, e in self._exposures.items()]
            heapq.heapify(self._expiry)
        while self._event_ids:
            eid, at = next(iter(self._event_ids.items()))
            if at > now:
                break
            self._event_ids.popitem(last=False)
        while self._pending:
            eid, p = next(iter(self._pending.items()))
            if p.deadline > now:
                break
            self._pending.popitem(last=False)
            self._resolve_unknown(p)


# -- settings --------------------------------------------------------------------------------------
class AttributionSettings(ServiceSettings):
    """``python -m cascade_stream.attribution`` (env prefix ``CASCADE_``, nested with ``__``)."""

    metrics_port: int = Field(9106, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 disables.")
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    topics: TopicConfig = Field(default_factory=TopicConfig, description="Only `events` is read.")
    exposures_topic: str = Field(
        "exposures", min_length=1, description="Exposure events (the router's CASCADE_EXPOSURES__TOPIC)."
    )
    group_id: str = Field("cascade-attribution", min_length=1, description="Consumer group.")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "latest", description="Where a new group starts (no committed offset): 'latest' = from now."
    )
    create_topics: bool = Field(True, description="Create missing topics at start-up (local, tests).")
    window_s: float = Field(1800.0, gt=0, description="Attribution window after the exposure's time.")
    max_exposures: int = Field(200_000, ge=1, description="LRU cap of the request_id -> exposure map.")
    pending_grace_s: float = Field(
        30.0, ge=0, description="How long an event waits for its (asynchronously logged) exposure."
    )
    max_pending: int = Field(50_000, ge=1, description="Events held waiting for their exposure at most.")
    max_event_ids: int = Field(1_000_000, ge=1, description="Event ids remembered for de-duplication.")
    max_label_sets: int = Field(
        100, ge=1, description="Distinct (experiment, variant, model_version) label sets; more are `_other`."
    )
    max_event_bytes: int = Field(64 * 1024, ge=256)
    poll_timeout_ms: int = Field(100, ge=1)
    commit_interval_s: float = Field(1.0, gt=0, description="Offsets are committed at most this often.")
    replay: bool = Field(True, description="Re-read the last window of exposures after an assignment.")
    replay_timeout_s: float = Field(120.0, gt=0)


# -- the Kafka process -----------------------------------------------------------------------------
def _action_from_record(value: bytes | None, max_bytes: int) -> Action:
    from cascade_stream.events import parse_event

    ev = parse_event(value, max_bytes)
    return Action(ev.event_id, ev.event_type.value, ev.item_id, ev.timestamp, ev.request_id)


def read_exposures(
    kafka: KafkaConfig, group_id: str, topic: str, partitions: list[int], since_ms: int, timeout_s: float
) -> list[dict[str, Any]]:
    """Exposure documents of ``topic`` from about ``since_ms`` up to the group's committed offset of
    each partition (a separate consumer that never joins the group; runs on a worker thread because
    kafka-python's rebalance callbacks must not block). Tansu may answer an earlier start: only slower."""
    from kafka import KafkaConsumer, TopicPartition

    out: list[dict[str, Any]] = []
    consumer = KafkaConsumer(**kafka.consumer(group_id, max_poll_records=5000))
    try:
        deadline = time.monotonic() + timeout_s
        for p in partitions:
            tp = TopicPartition(topic, p)
            end = consumer.committed(tp)
            if not end:
                continue  # nothing consumed by the group yet: nothing to re-read
            consumer.assign([tp])
            found = consumer.offsets_for_times({tp: since_ms}).get(tp)
            start = found.offset if found is not None and found.timestamp >= 0 else None
            if start is None or start > end:
                start = consumer.beginning_offsets([tp])[tp]
            consumer.seek(tp, start)
            pos = start
            while pos < end and time.monotonic() < deadline:
                for recs in consumer.poll(timeout_ms=500).values():
                    for r in recs:
                        if r.offset >= end:
                            pos = end
                            break
                        pos = r.offset + 1
                        if r.timestamp is not None and 0 <= r.timestamp < since_ms:
                            continue
                        try:
                            out.append(json.loads(r.value))
                        except (TypeError, ValueError, RecursionError):  # nested too deeply: skip it
                            continue
            if pos < end:
                log.warning("exposure replay of %s[%d] stopped at %d/%d (timeout)", topic, p, pos, end)
        return out
    finally:
        consumer.close()


class AttributionProcess:
    """One consumer over the exposures and user-events topics feeding an :class:`Attributor`."""

    def __init__(self, s: AttributionSettings, attributor: Attributor | None = None) -> None:
        self.s = s
        # `is None`, not `or`: an Attributor has __len__, so an empty one is falsy
        self.attributor = attributor if attributor is not None else Attributor(
            window_s=s.window_s,
            max_exposures=s.max_exposures,
            pending_grace_s=s.pending_grace_s,
            max_pending=s.max_pending,
            max_event_ids=s.max_event_ids,
            max_label_sets=s.max_label_sets,
        )
        self.stop_event = threading.Event()
        self.consumer: Any = None
        self._done: dict[Any, int] = {}  # TopicPartition -> next offset to commit (processed)
        self._committed: dict[Any, int] = {}
        self._replays: list[tuple[Any, list[Any]]] = []  # (future, paused partitions)
        self._executor: Any = None
        self._last_commit = 0.0

    def run(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from kafka import ConsumerRebalanceListener, KafkaConsumer

        s = self.s
        self.consumer = KafkaConsumer(
            **s.kafka.consumer(s.group_id, auto_offset_reset=s.auto_offset_reset)
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exposure-replay")
        proc = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                proc.on_revoked(list(revoked))

            def on_partitions_assigned(self, assigned: Any) -> None:
                proc.on_assigned(list(assigned))

        self.consumer.subscribe([s.exposures_topic, s.topics.events], listener=Listener())
        try:
            while not self.stop_event.is_set():
                records = self.consumer.poll(timeout_ms=s.poll_timeout_ms)
                self._install_replays()
                self.process(records)
                self.attributor.expire()
                TRACKED.set(len(self.attributor))
                PENDING.set(self.attributor.pending)
                if time.monotonic() - self._last_commit >= s.commit_interval_s:
                    self.commit()
            self.commit()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self.consumer.close(autocommit=False)

    def process(self, records: dict[Any, list[Any]]) -> None:
        """Exposures of the batch first (an event and its exposure in one batch then join at once)."""
        ex = self.s.exposures_topic
        for tp in sorted(records, key=lambda tp: tp.topic != ex):
            for r in records[tp]:
                if tp.topic == ex:
                    try:
                        doc = json.loads(r.value)
                    except (TypeError, ValueError, RecursionError):  # nested too deeply: not an exposure
                        doc = None
                    self.attributor.add_exposure(doc)
                else:
                    try:
                        a = _action_from_record(r.value, self.s.max_event_bytes)
                    except ValueError:  # InvalidEvent: the stream worker dead-letters it
                        EVENTS.labels("unknown", "invalid").inc()
                    else:
                        self.attributor.add_event(a, (tp, r.offset))
                self._done[tp] = r.offset + 1

    def commit(self) -> None:
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata

        self._last_commit = time.monotonic()
        held: dict[Any, int] = {}
        for tp, off in self.attributor.pending_positions():
            held[tp] = min(off, held.get(tp, off))
        offsets = {}
        for tp, nxt in self._done.items():
            off = min(nxt, held.get(tp, nxt))
            if self._committed.get(tp) != off:
                offsets[tp] = OffsetAndMetadata(off, "", -1)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets)
        except (CommitFailedError, KafkaError) as e:  # rebalanced under us: the new owner re-reads
            log.warning("offset commit failed (events after the last commit may be counted again): %s", e)
            return
        for tp, om in offsets.items():
            self._committed[tp] = om.offset

    # -- assignment ----------------------------------------------------------------------------
    # kafka-python runs these on its IO thread: nothing here may block (no commit, no committed()).
    def on_revoked(self, revoked: list[Any]) -> None:
        gone = set(revoked)
        dropped = self.attributor.drop_pending(lambda where: where[0] not in gone)
        if dropped:
            log.info("dropped %d pending events of revoked partitions (re-read by the next owner)", dropped)
        for tp in revoked:
            self._done.pop(tp, None)
            self._committed.pop(tp, None)
        self._publish_assignment()

    def on_assigned(self, assigned: list[Any]) -> None:
        self._publish_assignment()
        ex = sorted(tp.partition for tp in assigned if tp.topic == self.s.exposures_topic)
        if not self.s.replay or not ex:
            return
        # hold every newly assigned partition until the map holds the recent exposures again
        self.consumer.pause(*assigned)
        since = int((time.time() - self.s.window_s) * 1000)
        fut = self._executor.submit(
            read_exposures, self.s.kafka, self.s.group_id, self.s.exposures_topic, ex, since,
            self.s.replay_timeout_s,
        )
        self._replays.append((fut, list(assigned)))
        log.info("assigned %s: re-reading the last window of exposures", sorted(map(str, assigned)))

    def _install_replays(self) -> None:
        keep = []
        for fut, paused in self._replays:
            if not fut.done():
                keep.append((fut, paused))
                continue
            try:
                docs = fut.result()
            except Exception as e:  # replay is best effort: clicks on older lists become unknown_request
                log.warning("exposure replay failed: %s", e)
                docs = []
            for d in docs:
                self.attributor.add_exposure(d, count=False)
            owned = self.consumer.assignment()
            self.consumer.resume(*[tp for tp in paused if tp in owned])
            log.info("replayed %d exposures; consuming", len(docs))
        self._replays = keep

    def _publish_assignment(self) -> None:
        owned = self.consumer.assignment() if self.consumer is not None else set()
        for topic in (self.s.exposures_topic, self.s.topics.events):
            ASSIGNED.labels(topic).set(sum(1 for tp in owned if tp.topic == topic))


def run(s: AttributionSettings) -> int:
    from cascade_platform.metrics import start_metrics_server

    from cascade_stream.broker import create_topics

    if s.create_topics:
        created = create_topics(
            s.kafka, [s.exposures_topic, s.topics.events], s.topics.partitions, s.topics.replication_factor
        )
        if created:
            log.info("created topics %s", created)
    start_metrics_server(s.metrics_port, s.host)
    proc = AttributionProcess(s)

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: committing and leaving the group", signum)
        proc.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "attribution running: %s + %s, group %s, window %.0fs, metrics :%d",
        s.exposures_topic, s.topics.events, s.group_id, s.window_s, s.metrics_port,
    )
    proc.run()
    return 0


def main() -> int:
    from cascade_platform.logs import setup_logging
    from cascade_platform.settings import load_settings

    s = load_settings(AttributionSettings)
    setup_logging("attribution", s.log_level, s.log_json)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        return run(s)
    except (ValueError, OSError) as e:
        print(f"attribution: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
