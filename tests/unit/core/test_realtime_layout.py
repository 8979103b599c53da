"""FeatureLayout real-time block: backward compatibility with versions trained without it, semantics."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest

from cascade_core.features import (
    RT_CROSS,
    RT_HALF_LIFE_MS,
    RT_ITEM_INPUTS,
    RT_ITEM_SCALARS,
    RT_USER_INPUTS,
    RT_USER_SCALARS,
    FeatureLayout,
    realtime_item_matrix,
    realtime_user_vector,
)
from cascade_core.registry import AnnSpec, ModelManifest, RankerSpec, Registry

CATS = ("Action", "Comedy")
# The feature names of a version trained before the real-time block existed (spelled out on purpose:
# a change to them breaks every registered version).
LEGACY_NAMES = [
    "user_log_interactions", "user_mean_rating", "user_log_days_since_last",
    "user_cat_affinity:Action", "user_cat_affinity:Comedy",
    "item_log_popularity", "item_mean_rating", "item_year_norm", "item_cat:Action", "item_cat:Comedy",
    "retrieval_score", "category_match",
]


def test_legacy_layout_is_unchanged():
    legacy = FeatureLayout(CATS)
    assert legacy.names == LEGACY_NAMES and legacy.dim == len(LEGACY_NAMES) == legacy.rt_offset
    assert FeatureLayout.from_names(LEGACY_NAMES) == legacy and not legacy.realtime
    rt = FeatureLayout(CATS, realtime=True)
    assert rt.names[: len(LEGACY_NAMES)] == LEGACY_NAMES  # appended, never interleaved
    assert rt.names[len(LEGACY_NAMES):] == [*RT_USER_SCALARS, "rt_user_cat:Action", "rt_user_cat:Comedy",
                                            *RT_ITEM_SCALARS, *RT_CROSS]
    assert FeatureLayout.from_names(rt.names) == rt
    # the batch vectors (what Feast stores) keep their widths
    assert (rt.user_dim, rt.item_dim) == (legacy.user_dim, legacy.item_dim)
    with pytest.raises(ValueError):
        FeatureLayout.from_names(rt.names[:-1])


def test_assemble_legacy_columns_identical_and_realtime_block():
    legacy, rt = FeatureLayout(CATS), FeatureLayout(CATS, realtime=True)
    rng = np.random.default_rng(0)
    u = rng.random(legacy.user_dim).astype(np.float32)
    items = rng.random((4, legacy.item_dim)).astype(np.float32)
    items[:, -2:] = [[1, 0], [0, 1], [1, 1], [0, 0]]
    s = rng.random(4).astype(np.float32)
    a = legacy.assemble(u, items, s)
    with pytest.raises(ValueError):
        legacy.assemble(u, items, s, user_rt=np.zeros(5, np.float32))
    b0 = rt.assemble(u, items, s)  # no events
    assert np.array_equal(b0[:, : legacy.dim], a) and not b0[:, legacy.dim:].any()
    user_rt = np.array([1.0, 0.5, 0.7, 0.2, 0.8], np.float32)
    item_rt = np.array([[0.1], [0.2], [0.3], [0.4]], np.float32)
    b = rt.assemble(u, items, s, user_rt=user_rt, item_rt=item_rt)
    assert np.array_equal(b[:, : legacy.dim], a)
    assert np.allclose(b[:, -1], [0.2, 0.8, 0.5, 0.0])  # rt_category_match
    batch = rt.assemble_batch(np.tile(u, (4, 1)), items, s, np.tile(user_rt, (4, 1)), item_rt)
    assert np.allclose(batch, b)


def test_realtime_vectors_staleness_and_no_events():
    lay = FeatureLayout(CATS, realtime=True)
    assert not realtime_user_vector(lay, None, 10**12).any()
    last = 1_800_000_000_000
    values = {"click_count_5m": 2, "add_to_cart_count_5m": 1, "purchase_count_5m": 0, "click_count_1h": 4,
              "add_to_cart_count_1h": 1, "purchase_count_1h": 1, "last_categories": ["Comedy", "Comedy",
              "Action", "unknown"], "last_event_ms": last}
    v = realtime_user_vector(lay, values, last + 1000)
    rec = 0.5 ** (1000 / RT_HALF_LIFE_MS)
    assert np.allclose(v, [rec, math.log1p(3), math.log1p(6), rec * 0.25, rec * 0.5], atol=1e-6)
    v = realtime_user_vector(lay, values, last + 10 * 60_000)  # 5m window stale, 1h not
    assert v[1] == 0 and v[2] == pytest.approx(math.log1p(6))
    v = realtime_user_vector(lay, values, last + 2 * RT_HALF_LIFE_MS)
    assert v[0] == pytest.approx(0.25) and v[1] == v[2] == 0 and v[4] == pytest.approx(0.125)
    m = realtime_item_matrix(lay, np.array([8.0, 5.0]), np.array([last, last]), np.array([True, False]),
                             last + RT_HALF_LIFE_MS)
    assert np.allclose(m[:, 0], [math.log1p(4.0), 0.0])


def test_core_constants_match_the_stream_contract():
    from cascade_features import stream_definitions as sd

    assert RT_HALF_LIFE_MS == sd.TRENDING_HALF_LIFE_MS
    assert set(RT_USER_INPUTS) <= set(sd.USER_REALTIME_FEATURES)
    assert set(RT_ITEM_INPUTS) <= set(sd.ITEM_REALTIME_FEATURES)
    assert sd.LAST_CATEGORIES in RT_USER_INPUTS and sd.LAST_EVENT_MS in RT_USER_INPUTS


def test_version_without_realtime_still_loads_and_serves(tmp_path):
    """A registry version trained before the real-time block: the feature service's defaults, the
    router's model and the hydrator (no real-time reader needed) take it as before."""
    from cascade_features.hydrator import FeatureDefaults, OnlineFeatureHydrator
    from cascade_features.stores import FetchResult, OnlineReader, item_view, user_view
    from cascade_router.model import ServingModel

    legacy = FeatureLayout(CATS)
    reg = Registry(tmp_path)
    reg.create_version_dir("v-old")
    reg.write_manifest(ModelManifest(
        version_id="v-old", created_at=datetime.now(timezone.utc), data_fingerprint="x", dataset="t",
        n_users=1, n_items=1, embedding_dim=2, ann=AnnSpec(dim=2),
        ranker=RankerSpec(feature_names=LEGACY_NAMES, feature_defaults=[0.5] * len(LEGACY_NAMES)),
    ))
    m = reg.manifest("v-old")
    defaults = FeatureDefaults.from_ranker(m.ranker)
    assert defaults.layout == legacy
    sm = ServingModel(tmp_path, "v-old")
    sm.load()
    assert sm.layout == legacy and sm.feature_names == LEGACY_NAMES

    class Reader(OnlineReader):
        type = "memory"

        async def fetch(self, user_id, item_ids):
            n = len(item_ids)
            return FetchResult(np.ones(legacy.user_dim, np.float32), True,
                               np.ones((n, legacy.item_dim), np.float32), np.ones(n, bool))

    import asyncio

    h = OnlineFeatureHydrator(Reader("p", user_view(legacy.user_dim), item_view(legacy.item_dim)), defaults)
    a = asyncio.run(h.assemble("u", ["a", "b"], None))
    assert a.matrix.shape == (2, len(LEGACY_NAMES))
    assert np.array_equal(a.matrix, legacy.assemble(np.ones(legacy.user_dim), np.ones((2, legacy.item_dim))))
    # a real-time layout refuses a reader that does not read the stream views
    rt_names = FeatureLayout(CATS, realtime=True).names
    rt_defaults = FeatureDefaults.from_ranker(RankerSpec(feature_names=rt_names, feature_defaults=[0.0] * len(rt_names)))
    with pytest.raises(ValueError, match="realtime"):
        OnlineFeatureHydrator(Reader("p", user_view(legacy.user_dim), item_view(legacy.item_dim)), rt_defaults)
