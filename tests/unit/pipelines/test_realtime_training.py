"""Training-time real-time features: replayed events = the simulator's, PIT join = Feast's, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cascade_core.features import RT_USER_INPUTS, FeatureLayout
from cascade_pipelines.realtime import RealtimeAt, RealtimeHistory, first_label_times, interaction_events
from cascade_stream.simulator import replay

CATALOG = {"10": "Comedy", "11": "Drama", "12": "Comedy", "13": "Action"}


def _interactions() -> pd.DataFrame:
    rows = [("1", "10", 1000, 4.0), ("1", "11", 1000, 2.0), ("2", "10", 1005, 5.0), ("1", "12", 1300, 4.5),
            ("2", "13", 4000, 3.5), ("1", "13", 9000, 1.0), ("3", "12", 9000, np.nan)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    df["user_id"] = pd.Categorical(df["user_id"], categories=["1", "2", "3"])
    df["item_id"] = pd.Categorical(df["item_id"], categories=sorted(CATALOG))
    return df


def test_interaction_events_are_what_the_replay_simulator_sends():
    df = _interactions()
    ev = interaction_events(df)
    sim = [(t.event_type, t.user_id, t.item_id) for t in replay(df)]
    assert list(zip(ev["event_type"], ev["user_id"], ev["item_id"])) == sim
    assert ev["event_id"].is_unique and (ev["timestamp"] % 1000 == 0).all()


def test_point_in_time_join_equals_feast_and_is_strictly_before(tmp_path):
    """The as-of lookup equals Feast get_historical_features at t - 1 ms over the offline tables that
    python -m cascade_stream.offline writes (same compute_features), and never sees the event at t."""
    from feast import FeatureStore

    from cascade_features.config import FeastSettings, SqliteStoreConfig, feast_repo_config
    from cascade_features.stream_definitions import USER_REALTIME_VIEW, stream_objects
    from cascade_stream.offline import EventLog, write_offline

    df = _interactions()
    ev = interaction_events(df)
    out = tmp_path / "stream"
    write_offline(EventLog(ev, 0), CATALOG, out)
    hist = RealtimeHistory.from_events(ev, CATALOG)

    fs = FeatureStore(config=feast_repo_config(FeastSettings(
        project="rt_pit", registry_path=str(tmp_path / "reg.db"),
        online_store=SqliteStoreConfig(path=str(tmp_path / "online.db")))))
    fs.apply(stream_objects(out))
    queries = [("1", 1_000_000), ("1", 1_000_001), ("1", 1_300_000), ("1", 1_300_001), ("1", 99_000_000),
               ("2", 1_005_001), ("2", 3_000_000), ("3", 9_000_000), ("3", 9_000_001), ("4", 5_000_000)]
    entity_df = pd.DataFrame({"q": range(len(queries)), "user_id": [u for u, _ in queries],
                              "event_timestamp": pd.to_datetime([t - 1 for _, t in queries], unit="ms", utc=True)})
    got = fs.get_historical_features(entity_df=entity_df,
                                     features=[f"{USER_REALTIME_VIEW}:{n}" for n in RT_USER_INPUTS]).to_df()
    # Feast neither keeps the entity_df order nor (file offline store) the rows of an entity whose
    # every feature row is later than the requested time: those are "no value" too.
    got = got.set_index("q")
    assert set(got.index) <= set(range(len(queries))) and len(got) >= len(queries) - 2
    for q, (u, t) in enumerate(queries):
        mine = hist.user_values(u, t)
        if q not in got.index:
            assert mine is None, (u, t)
            continue
        row = got.loc[q]
        if mine is None:
            assert pd.isna(row["last_event_ms"]), (u, t)
            continue
        assert int(row["last_event_ms"]) == int(mine["last_event_ms"]) < t, (u, t)
        for n in RT_USER_INPUTS:
            a, b = row[n], mine[n]
            assert (list(a) == list(b)) if n == "last_categories" else int(a) == int(b), (u, t, n)
    # strictly before t: the interaction at t is not visible at t, visible 1 ms later
    assert hist.user_values("1", 1_300_000)["last_event_ms"] == 1_000_000
    assert hist.user_values("1", 1_300_001)["last_event_ms"] == 1_300_000
    assert hist.user_values("3", 9_000_000) is None


def test_realtime_at_uses_each_users_first_label_time():
    df = _interactions()
    hist = RealtimeHistory.from_events(interaction_events(df), CATALOG)
    labels = df[df["timestamp"] >= 4000]
    times = first_label_times(labels)
    assert times == {1: 4_000_000, 0: 9_000_000, 2: 9_000_000}
    lay = FeatureLayout(("Action", "Comedy", "Drama"), realtime=True)
    at = RealtimeAt(lay, hist, np.array(["1", "2", "3"]), np.array(sorted(CATALOG)), times)
    v = at.user(0)  # user "1" at 9000 s: its last events at 1300 s (2 h 8 min before)
    assert v[0] > 0 and v[1] == v[2] == 0  # recency decayed, windows stale
    assert not at.user(2).any()  # user "3": nothing before its first label
    m = at.items(0, np.array([0, 3]))  # items "10" (events at 1000/1005 s), "13" (4000 s)
    assert (m[:, 0] > 0).all()
