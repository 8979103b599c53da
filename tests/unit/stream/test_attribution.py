"""The online attribution join (cascade_stream.attribution.Attributor): pure, injected clock."""

from __future__ import annotations

import pytest
from cascade_router.exposures import exposure_event
from cascade_stream.attribution import OTHER, Action, AttributionSettings, Attributor, TallySink

T0 = 1_714_564_800.0  # seconds
L = ("exp-1", "treatment", "v2")


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(clock: Clock | None = None, **kw) -> tuple[Attributor, TallySink, Clock]:
    clock = clock or Clock()
    sink = TallySink()
    kw.setdefault("window_s", 1800.0)
    kw.setdefault("pending_grace_s", 30.0)
    return Attributor(clock=clock, sink=sink, **kw), sink, clock


def exposure(rid: str, items=("10", "11", "12"), *, at: float = T0, forced: bool = False,
             experiment="exp-1", variant="treatment", model_version="v2") -> dict:
    """An exposure exactly as the router builds it."""
    return exposure_event(
        request_id=rid, user_id="7", experiment=experiment, variant=variant, kind="ab", forced=forced,
        traffic=50.0, model_version=model_version, degraded=False, items=list(items),
        sources=["ann"] * len(items), ts_ms=int(at * 1000),
    )


_n = 0


def act(rid: str | None, item: str = "11", kind: str = "click", *, at: float = T0 + 5,
        event_id: str | None = None) -> Action:
    global _n
    _n += 1
    return Action(event_id or f"e{_n}", kind, item, int(at * 1000), rid)


def test_click_after_exposure_is_counted_with_the_exposure_labels():
    a, sink, _ = make()
    assert a.add_exposure(exposure("r1")) == "counted"
    assert a.add_event(act("r1", "11")) == "attributed"
    assert a.add_event(act("r1", "12", "add_to_cart")) == "attributed"
    assert a.add_event(act("r1", "12", "purchase")) == "attributed"
    assert sink.counts[("impressions", *L)] == 1
    assert sink.counts[("click", *L)] == 1
    assert sink.counts[("add_to_cart", *L)] == 1 and sink.counts[("purchase", *L)] == 1
    assert sink.counts[("event", "click", "attributed")] == 1


def test_click_on_an_item_not_shown_is_unattributed():
    a, sink, _ = make()
    a.add_exposure(exposure("r1"))
    assert a.add_event(act("r1", "999")) == "item_not_shown"
    assert sink.counts[("click", *L)] == 0
    assert sink.counts[("unattributed", "click", "item_not_shown")] == 1


def test_click_with_unknown_request_id_waits_for_the_grace_then_is_unattributed():
    a, sink, clock = make(pending_grace_s=30)
    assert a.add_event(act("nope")) == "pending"
    assert a.pending == 1
    clock.t += 29
    a.expire()
    assert a.pending == 1 and not sink.counts[("unattributed", "click", "unknown_request")]
    clock.t += 2
    a.expire()
    assert a.pending == 0
    assert sink.counts[("unattributed", "click", "unknown_request")] == 1
    assert sink.counts[("event", "click", "unknown_request")] == 1


def test_click_before_its_exposure_is_attributed_when_the_exposure_arrives():
    a, sink, clock = make()
    assert a.add_event(act("r1", "10", at=T0 + 1), where=("p0", 41)) == "pending"
    assert a.pending_positions() == [("p0", 41)]
    clock.t += 3
    a.add_exposure(exposure("r1", at=T0))
    assert a.pending == 0 and a.pending_positions() == []
    assert sink.counts[("click", *L)] == 1
    clock.t += 60
    a.expire()
    assert not sink.counts[("unattributed", "click", "unknown_request")]


def test_click_without_request_id():
    a, sink, _ = make()
    assert a.add_event(act(None)) == "no_request_id"
    assert sink.counts[("unattributed", "click", "no_request_id")] == 1


def test_duplicate_event_id_is_counted_once_including_while_pending():
    a, sink, _ = make()
    a.add_exposure(exposure("r1"))
    e = act("r1", "11", event_id="same")
    assert a.add_event(e) == "attributed"
    assert a.add_event(e) == "duplicate"
    assert a.add_event(act("r1", "11", event_id="same")) == "duplicate"
    assert sink.counts[("click", *L)] == 1
    p = act("r2", "10", event_id="early")
    assert a.add_event(p) == "pending"
    assert a.add_event(p) == "duplicate"
    a.add_exposure(exposure("r2"))
    assert sink.counts[("click", *L)] == 2
    assert a.add_event(p) == "duplicate"
    assert sink.counts[("click", *L)] == 2


def test_duplicate_exposure_counts_one_impression():
    a, sink, _ = make()
    assert a.add_exposure(exposure("r1")) == "counted"
    assert a.add_exposure(exposure("r1")) == "duplicate"
    assert sink.counts[("impressions", *L)] == 1


def test_repeat_clicks_on_the_same_item_of_one_list_count_once():
    a, sink, _ = make()
    a.add_exposure(exposure("r1"))
    assert a.add_event(act("r1", "11")) == "attributed"
    assert a.add_event(act("r1", "11")) == "repeat"  # another event_id, same item and list
    assert a.add_event(act("r1", "12")) == "attributed"
    assert sink.counts[("click", *L)] == 2


def test_exposure_expires_after_the_window():
    a, sink, clock = make(window_s=600)
    a.add_exposure(exposure("r1", at=T0))
    clock.t = T0 + 599
    a.expire()
    assert len(a) == 1
    assert a.add_event(act("r1", "10", at=T0 + 590)) == "attributed"
    clock.t = T0 + 601
    a.expire()
    assert len(a) == 0 and sink.counts[("evicted", "expired")] == 1
    assert a.add_event(act("r1", "11", at=T0 + 600.5)) == "pending"  # could be a newer exposure...
    clock.t += 31
    a.expire()
    assert sink.counts[("unattributed", "click", "unknown_request")] == 1


def test_event_time_beyond_the_window_and_stale_events():
    a, sink, clock = make(window_s=600)
    a.add_exposure(exposure("r1", at=T0))
    # a click whose own time is more than the window after the exposure (late storefront clock)
    assert a.add_event(act("r1", "10", at=T0 + 700)) == "outside_window"
    # processed long after it happened (lag): never attributable
    clock.t = T0 + 2000
    assert a.add_event(act("r1", "11", at=T0 + 10)) == "stale"
    assert sink.counts[("unattributed", "click", "outside_window")] == 1
    assert sink.counts[("unattributed", "click", "stale")] == 1
    # an exposure older than the window when it arrives is not counted
    assert a.add_exposure(exposure("old", at=T0)) == "stale"
    assert sink.counts[("impressions", *L)] == 1


def test_lru_cap_evicts_the_least_recently_used_exposure():
    a, sink, _ = make(max_exposures=2)
    a.add_exposure(exposure("r1"))
    a.add_exposure(exposure("r2"))
    assert a.add_event(act("r1", "10")) == "attributed"  # r1 used: r2 is now the LRU entry
    a.add_exposure(exposure("r3"))
    assert len(a) == 2 and sink.counts[("evicted", "capacity")] == 1
    assert a.add_event(act("r1", "11")) == "attributed"
    assert a.add_event(act("r3", "11")) == "attributed"
    assert a.add_event(act("r2", "11")) == "pending"  # evicted


def test_pending_buffer_is_capped():
    a, sink, _ = make(max_pending=2)
    for i in range(3):
        a.add_event(act(f"x{i}"))
    assert a.pending == 2
    assert sink.counts[("unattributed", "click", "unknown_request")] == 1


def test_forced_exposures_are_left_out_and_impressions_ignored():
    a, sink, _ = make()
    assert a.add_exposure(exposure("qa", forced=True)) == "forced"
    assert a.add_event(act("qa", "10")) == "forced"
    assert a.add_event(act("qa", "10", "impression")) == "ignored"
    assert a.add_event(act("qa", "10", "view")) == "ignored"
    assert not [k for k in sink.counts if k[0] in ("impressions", "click")]
    assert not [k for k in sink.counts if k[0] == "unattributed"]


def test_replayed_exposures_join_without_counting_impressions():
    a, sink, _ = make()
    assert a.add_exposure(exposure("r1"), count=False) == "replayed"
    assert a.add_event(act("r1", "10")) == "attributed"
    assert sink.counts[("impressions", *L)] == 0 and sink.counts[("click", *L)] == 1


def test_label_sets_are_capped():
    a, sink, _ = make(max_label_sets=2)
    for i in range(4):
        a.add_exposure(exposure(f"r{i}", model_version=f"v{i}"))
    assert sink.counts[("impressions", "exp-1", "treatment", "v0")] == 1
    assert sink.counts[("impressions", "exp-1", "treatment", "v1")] == 1
    assert sink.counts[("impressions", OTHER, OTHER, OTHER)] == 2
    a.add_event(act("r3", "10"))
    assert sink.counts[("click", OTHER, OTHER, OTHER)] == 1


def test_event_ids_are_forgotten_after_the_window():
    a, sink, clock = make(window_s=60)
    a.add_event(act(None, event_id="e"))
    clock.t += 61
    a.expire()
    assert a.add_event(act(None, event_id="e", at=clock.t)) == "no_request_id"


def test_drop_pending_of_revoked_partitions():
    a, _, _ = make()
    a.add_event(act("a"), where=("p0", 1))
    a.add_event(act("b"), where=("p1", 5))
    assert a.drop_pending(lambda w: w[0] != "p1") == 1
    assert a.pending_positions() == [("p0", 1)]
    a.add_exposure(exposure("b"))  # its event was dropped: nothing to resolve
    assert a.pending == 1


def test_invalid_exposures_are_skipped():
    a, sink, _ = make()
    assert a.add_exposure({"request_id": "r", "items": "x", "ts": 1}) == "invalid"
    assert a.add_exposure(None) == "invalid"
    assert sink.counts[("exposure", "invalid")] == 2


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("CASCADE_WINDOW_S", "600")
    monkeypatch.setenv("CASCADE_EXPOSURES_TOPIC", "exp.t")
    monkeypatch.setenv("CASCADE_KAFKA__BOOTSTRAP_SERVERS", "k:9092")
    s = AttributionSettings()
    got = (s.window_s, s.exposures_topic, s.metrics_port, s.group_id)
    assert got == (600, "exp.t", 9106, "cascade-attribution")
    assert s.kafka.consumer(s.group_id)["enable_auto_commit"] is False
    monkeypatch.setenv("CASCADE_WINDOW_S", "0")
    with pytest.raises(ValueError):
        AttributionSettings()


def test_malformed_exposure_and_event_records_never_stop_the_process():
    """Nested-too-deep JSON raises RecursionError (not ValueError) in json.loads: it must be skipped,
    not escape process() (which would crash-loop the consumer on the same record)."""
    from types import SimpleNamespace

    from cascade_stream.attribution import AttributionProcess
    from kafka import TopicPartition

    a, sink, _ = make()
    proc = AttributionProcess(AttributionSettings(), attributor=a)
    deep = b"[" * 100_000 + b"]" * 100_000
    ex_tp = TopicPartition(proc.s.exposures_topic, 0)
    ev_tp = TopicPartition(proc.s.topics.events, 0)
    records = {
        ex_tp: [SimpleNamespace(value=deep, offset=0), SimpleNamespace(value=b"\xff\xfe", offset=1)],
        ev_tp: [SimpleNamespace(value=deep, offset=0)],
    }
    proc.process(records)
    assert sink.counts[("exposure", "invalid")] == 2
    assert proc._done[ex_tp] == 2 and proc._done[ev_tp] == 1  # consumed past them: no crash loop
