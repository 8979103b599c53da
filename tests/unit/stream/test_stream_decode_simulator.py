"""The internal by-item message format, replay's time bound, and the traffic simulator's modes."""

from __future__ import annotations

import collections
import itertools

import pandas as pd
import pytest
from cascade_features.stream_definitions import MAX_WINDOW_MS
from cascade_stream import simulator
from cascade_stream.decode import InvalidEvent, Rules, decode_by_item, encode_by_item
from cascade_stream.events import validate_event
from cascade_stream.features import Event
from cascade_stream.replay import replay_from_ms

CATALOG = {str(i): ("Comedy", "Drama", "Horror")[i % 3] for i in range(1, 61)}


def test_by_item_messages_round_trip():
    evs = [
        (Event("a", 2, "u1", "i1", 1_800_000_000_000), 1_800_000_000_500),
        (Event("b", 4, "u2", "i1", 1_800_000_000_100), 1_800_000_000_600),
    ]
    assert decode_by_item(encode_by_item(evs)) == evs


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b"[1]",
        b'{"v": 2, "events": []}',
        b'{"v": 1, "events": [["a", 9, "u", "i", 1, 2]]}',
        b'{"v": 1, "events": [["a", 1, "u", "i", 1]]}',
        b"nope",
        None,
    ],
)
def test_malformed_by_item_messages_are_rejected(raw):
    with pytest.raises(InvalidEvent, match="payload: not a by-item-batch.v1 message"):
        decode_by_item(raw)


def test_replay_reaches_back_over_the_largest_window_lateness_and_skew():
    rules = Rules("user_id", max_lateness_ms=3_600_000, max_future_ms=300_000)
    assert replay_from_ms(10**13, rules) == 10**13 - MAX_WINDOW_MS - 3_600_000 - 600_000


def test_focus_mode_clicks_distinct_items_of_one_category():
    ts = list(simulator.focus(CATALOG, "7", "Comedy", 5))
    assert [t.event_type for t in ts] == ["view", "click"] * 5
    assert {t.user_id for t in ts} == {"7"}
    assert len({t.item_id for t in ts}) == 5 and {CATALOG[t.item_id] for t in ts} == {"Comedy"}
    with pytest.raises(ValueError, match="category 'Jazz' not in the catalog"):
        list(simulator.focus(CATALOG, "7", "Jazz", 5))


def test_synthetic_sessions_are_valid_seeded_and_skewed():
    a = list(itertools.islice(simulator.synthetic(CATALOG, n_users=20, seed=3), 3000))
    b = list(itertools.islice(simulator.synthetic(CATALOG, n_users=20, seed=3), 3000))
    assert a == b
    kinds = collections.Counter(t.event_type for t in a)
    assert kinds["impression"] > kinds["view"] > kinds["click"] > kinds["purchase"] > 0
    assert {t.user_id for t in a} <= {str(u) for u in range(1, 21)}
    top = collections.Counter(t.item_id for t in a).most_common()
    assert top[0][1] > 3 * top[len(top) // 2][1]  # popularity-skewed, not uniform
    for t in a[:200]:
        validate_event(simulator.stamp(t))  # stamped templates satisfy the contract


def test_replay_mode_maps_ratings_to_a_funnel_in_time_order():
    df = pd.DataFrame(
        {
            "user_id": ["1", "2", "1"],
            "item_id": ["10", "11", "12"],
            "timestamp": [30, 10, 20],
            "rating": [5.0, 3.0, 4.0],
        }
    )
    ts = [(t.user_id, t.item_id, t.event_type) for t in simulator.replay(df)]
    assert ts == [
        ("2", "11", "view"),
        ("1", "12", "view"),
        ("1", "12", "click"),
        ("1", "10", "view"),
        ("1", "10", "click"),
        ("1", "10", "add_to_cart"),
        ("1", "10", "purchase"),
    ]
