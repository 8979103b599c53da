"""Window math, de-duplication and order independence of the real-time feature state."""

from __future__ import annotations

import math
import random
import uuid

import pandas as pd
import pytest
from cascade_features.stream_definitions import (
    COUNT_FEATURES,
    ITEM_REALTIME_FEATURES,
    LAST_N,
    TRENDING_HALF_LIFE_MS,
    USER_REALTIME_FEATURES,
)
from cascade_stream.features import EntityState, Event, compute_features, feature_rows

T0 = 1_800_000_000_000
MIN = 60_000
TYPES = {"impression": 0, "view": 1, "click": 2, "add_to_cart": 3, "purchase": 4}


def ev(t: str, ts: int, user: str = "u", item: str = "i", eid: str | None = None) -> Event:
    return Event(eid or str(uuid.uuid4()), TYPES[t], user, item, ts)


def test_windows_count_events_in_half_open_intervals():
    st = EntityState("user")
    # clicks at 0, 5, 30, 61 minutes and 1 day + 1 minute before the latest event at T0
    for age in (0, 5 * MIN, 30 * MIN, 61 * MIN, 24 * 60 * MIN - 1, 24 * 60 * MIN + MIN):
        st.add(ev("click", T0 - age))
    f = st.features()
    # 5m window is (T0-5m, T0]: the event exactly 5 minutes old is out
    assert f["click_count_5m"] == 1
    assert f["click_count_1h"] == 3
    # the event at exactly-24h-minus-1ms is in, the one beyond 24h was ignored as too old
    assert f["click_count_24h"] == 5
    assert f["view_count_24h"] == 0
    assert f["last_event_ms"] == T0
    assert set(f) == set(USER_REALTIME_FEATURES)


def test_windows_slide_with_the_latest_event_and_evict():
    st = EntityState("item")
    st.add(ev("view", T0))
    st.add(ev("view", T0 + 3 * MIN))
    assert st.features()["view_count_5m"] == 2
    st.add(ev("purchase", T0 + 7 * MIN))
    f = st.features()
    assert (f["view_count_5m"], f["view_count_1h"], f["purchase_count_5m"]) == (1, 2, 1)
    st.add(ev("click", T0 + 25 * 60 * MIN))  # a day later: everything before slides out
    f = st.features()
    assert (f["view_count_24h"], f["purchase_count_24h"], f["click_count_24h"]) == (0, 0, 1)
    assert st.n_events == 1
    assert set(f) == set(ITEM_REALTIME_FEATURES)


def test_duplicates_count_once_and_too_old_events_are_ignored():
    st = EntityState("user")
    e = ev("click", T0, eid="same")
    assert st.add(e) is True
    assert st.add(e) is False
    assert st.add(ev("view", T0 + 1, eid="same")) is False  # same id, other content: first copy wins
    assert st.add(ev("view", T0 - 24 * 60 * MIN)) is False  # at the edge of the largest window
    f = st.features()
    assert f["click_count_24h"] == 1 and f["view_count_24h"] == 0


def test_last_items_are_distinct_most_recent_first_and_skip_impressions():
    st = EntityState("user")
    cats = {str(i): f"c{i % 3}" for i in range(30)}
    for k in range(15):
        item = str(k)
        st.add(ev("click", T0 + k * 1000, item=item), cats[item])
    st.add(ev("view", T0 + 20_000, item="3"), cats["3"])  # re-engaged: moves to the front
    st.add(ev("impression", T0 + 30_000, item="29"), cats["29"])  # impressions do not count
    f = st.features()
    assert f["last_item_ids"] == ["3", "14", "13", "12", "11", "10", "9", "8", "7", "6"]
    assert len(f["last_item_ids"]) == LAST_N
    assert f["last_categories"] == [cats[i] for i in f["last_item_ids"]]


def test_trending_score_decays_with_half_life():
    st = EntityState("item")
    st.add(ev("purchase", T0))  # weight 5
    st.add(ev("view", T0 + TRENDING_HALF_LIFE_MS))  # weight 1, age 0
    assert st.features()["trending_score"] == pytest.approx(5 * 0.5 + 1)
    st.add(ev("impression", T0 + 2 * TRENDING_HALF_LIFE_MS))  # weight 0
    assert st.features()["trending_score"] == pytest.approx(5 * 0.25 + 0.5)


def _random_events(n: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    evs = []
    for _ in range(n):
        evs.append(
            Event(
                str(uuid.UUID(int=rng.getrandbits(128))),
                rng.randrange(5),
                str(rng.randrange(8)),
                str(rng.randrange(20)),
                T0 + rng.randrange(0, 30 * 60 * MIN),
            )
        )
    # redeliveries: 10% of events again, later in the log
    evs += rng.sample(evs, n // 10)
    return evs


@pytest.mark.parametrize("kind", ["user", "item"])
def test_final_state_is_independent_of_order_and_redelivery(kind):
    evs = _random_events(2000, seed=3)
    cats = {str(i): f"c{i % 4}" for i in range(20)}
    want = {r[f"{kind}_id"]: r for r in feature_rows(evs, kind, cats, every_event=False)}
    rng = random.Random(9)
    for _ in range(3):
        shuffled = evs[:]
        rng.shuffle(shuffled)
        states: dict[str, EntityState] = {}
        for e in shuffled:
            key = e.user_id if kind == "user" else e.item_id
            states.setdefault(key, EntityState(kind)).add(e, cats[e.item_id])
        got = {k: {f"{kind}_id": k, "as_of_ms": s.last_ms, **s.features()} for k, s in states.items()}
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == want[k], k


def test_batch_rows_are_point_in_time():
    evs = [
        ev("click", T0, user="a"),
        ev("view", T0 + MIN, user="a"),
        ev("click", T0 + 10 * MIN, user="a"),
        ev("click", T0 + 10 * MIN, user="b"),
    ]
    df = pd.DataFrame(
        [
            {
                "event_id": e.event_id,
                "event_type": list(TYPES)[e.type_index],
                "user_id": e.user_id,
                "item_id": e.item_id,
                "timestamp": e.ts,
            }
            for e in evs
        ]
    )
    tables = compute_features(df)
    users = tables.users.set_index(["user_id", "as_of_ms"])
    assert users.loc[("a", T0), "click_count_5m"] == 1
    assert users.loc[("a", T0 + MIN), "view_count_5m"] == 1
    assert users.loc[("a", T0 + 10 * MIN), "click_count_5m"] == 1  # the first click slid out
    assert users.loc[("a", T0 + 10 * MIN), "click_count_1h"] == 2
    assert len(tables.users) == 4
    # one item, events at three distinct times -> three rows; the last has all four events
    items = tables.items.sort_values("as_of_ms")
    assert list(items["as_of_ms"]) == [T0, T0 + MIN, T0 + 10 * MIN]
    last = items.iloc[-1]
    assert (
        last["click_count_5m"],
        last["click_count_1h"],
        last["view_count_1h"],
        last["click_count_24h"],
    ) == (2, 3, 1, 3)
    assert last[list(COUNT_FEATURES)].sum() == 2 + 4 + 4  # 5m: both clicks at +10m; 1h and 24h: all four
    assert not math.isnan(items.iloc[-1]["trending_score"])


def test_batch_rejects_unknown_types():
    df = pd.DataFrame(
        [{"event_id": "x", "event_type": "like", "user_id": "u", "item_id": "i", "timestamp": T0}]
    )
    with pytest.raises(ValueError, match="unknown event types"):
        compute_features(df)
