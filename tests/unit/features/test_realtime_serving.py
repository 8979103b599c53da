"""Real-time features: the vector served from the online store equals the one training computes.

Serving side: the stream worker's code (``EntityState`` folds the events, ``OnlineStoreWriter`` writes
``user_realtime`` / ``item_realtime`` into Feast's SQLite or real Redis online store), the fast reader
(``make_reader(..., realtime=True)``, one round trip) and the feature service's hydrator at request
time ``t``. Training side: the same events through ``cascade_pipelines.realtime`` (the offline tables
of ``compute_features``, point-in-time joined strictly before ``t``) and ``FeatureLayout.assemble``.
Same event history, same time -> the same matrix columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cascade_core.features import FeatureLayout
from cascade_features.config import FeastSettings, feast_repo_config
from cascade_features.hydrator import FeatureDefaults, OnlineFeatureHydrator
from cascade_features.repo import apply_and_materialize
from cascade_features.stores import make_reader
from cascade_features.synthetic import write_feature_tables
from cascade_pipelines.realtime import RealtimeHistory
from cascade_stream.features import EVENT_COLUMNS, EntityState, Event
from cascade_stream.writer import FeatureRow, make_writer
from cascade_features.stream_definitions import EVENT_TYPES

CATS = ("Action", "Comedy", "Drama")
CATALOG = {"i0": "Action", "i1": "Comedy", "i2": "Comedy", "i3": "Drama", "i4": "Comedy", "i5": "Horror",
           "i6": "Action"}
T0 = 1_800_000_000_000
MIN = 60_000


def _events() -> pd.DataFrame:
    """u0: a session of views/clicks (Comedy-heavy) over 40 min, a duplicate re-send, an impression;
    u1: one old click (2 h before t); u2: nothing. Items get events from several users."""
    rows = []

    def ev(eid: str, t: str, u: str, i: str, ts: int) -> None:
        rows.append((eid, t, u, i, ts))

    for k, (item, typ) in enumerate([("i1", "view"), ("i1", "click"), ("i2", "click"), ("i0", "view"),
                                     ("i4", "click"), ("i4", "add_to_cart"), ("i3", "impression"),
                                     ("i2", "purchase"), ("i5", "click")]):
        ev(f"e-u0-{k}", typ, "u0", item, T0 + k * 5 * MIN)
    ev("e-u0-4", "click", "u0", "i4", T0 + 4 * 5 * MIN)  # producer retry: same event_id, counted once
    ev("e-u1-0", "click", "u1", "i6", T0 - 80 * MIN)
    ev("e-u3-0", "view", "u3", "i1", T0 + 41 * MIN)
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))


def _worker_rows(df: pd.DataFrame, kind: str) -> list[FeatureRow]:
    """What the worker writes: each entity's state folded from its events, absolute values."""
    states: dict[str, EntityState] = {}
    for eid, typ, user, item, ts in df.itertuples(index=False):
        ent = user if kind == "user" else item
        st = states.setdefault(ent, EntityState(kind))  # type: ignore[arg-type]
        st.add(Event(eid, EVENT_TYPES.index(typ), user, item, int(ts)), CATALOG.get(item, "unknown"))
    return [FeatureRow(ent, st.last_ms, st.features()) for ent, st in states.items()]


@pytest.mark.parametrize("delay_ms", [1, 3 * MIN, 70 * MIN])
def test_served_realtime_vector_equals_training_vector(online_store, tmp_path, delay_ms):
    from feast import FeatureStore

    config, project = online_store
    layout = FeatureLayout(CATS, realtime=True)
    registry_path = str(tmp_path / "registry.db")
    write_feature_tables(tmp_path / "tables", n_users=4, n_items=8, user_dim=layout.user_dim,
                         item_dim=layout.item_dim, seed=3)
    # batch views + the stream views (build_definitions registers both), then the worker's writes
    apply_and_materialize("t", config, project=project, registry_path=registry_path,
                          source_dir=tmp_path / "tables")
    store = FeatureStore(config=feast_repo_config(FeastSettings(
        project=project, registry_path=registry_path, online_store=config)))
    df = _events()
    for kind in ("user", "item"):
        make_writer("online_store", store, kind).write(_worker_rows(df, kind))  # type: ignore[arg-type]

    t = int(df["timestamp"].max()) + delay_ms  # request time, after the last event
    defaults = FeatureDefaults(layout, np.full(layout.user_dim, 0.25, np.float32),
                               np.full(layout.item_dim, 0.5, np.float32))
    history = RealtimeHistory.from_events(df, CATALOG)
    items = ["i1", "i2", "i3", "i6", "i7", "nope", "i1"]  # found, no real-time row, no row at all, dup
    scores = np.linspace(0.1, 0.7, len(items)).astype(np.float32)

    async def serve(user: str) -> np.ndarray:
        reader = make_reader(config, project, layout.user_dim, layout.item_dim, realtime=True)
        hydrator = OnlineFeatureHydrator(reader, defaults, clock_ms=lambda: t)
        await hydrator.initialize()
        try:
            fetched = await reader.fetch(user, items)
            a = await hydrator.assemble(user, items, scores)
        finally:
            await hydrator.close()
        # training side, with the same batch vectors (or defaults) the reader found
        user_vec = fetched.user_vec if fetched.user_found else defaults.user
        item_mat = np.where(fetched.item_found[:, None], fetched.item_mat, defaults.item[None, :])
        want = layout.assemble(user_vec, item_mat, scores, user_rt=history.user_vector(layout, user, t),
                               item_rt=history.item_matrix(layout, items, t))
        np.testing.assert_allclose(a.matrix, want, rtol=0, atol=1e-6, err_msg=f"user {user} at +{delay_ms} ms")
        return a.matrix

    import asyncio

    m0 = asyncio.run(serve("u0"))
    o = layout.rt_offset
    assert m0[0, o] > 0, "u0 is active: recency > 0"
    m_cold = asyncio.run(serve("u2"))  # no events: all-zero user real-time block, as in training
    assert not m_cold[:, o : o + layout.rt_user_dim].any()
    asyncio.run(serve("u1"))
    asyncio.run(serve("u3"))
    # u0's recent interest: mostly Comedy, no Drama (its Drama event is an impression)
    names = layout.names
    assert m0[0, names.index("rt_user_cat:Comedy")] > m0[0, names.index("rt_user_cat:Action")] > 0
    assert m0[0, names.index("rt_user_cat:Drama")] == 0
