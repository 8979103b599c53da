"""Matrix assembly with manifest defaults, the hydrator stage, and GetFeatures request validation."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.features.v1 import features_pb2
from cascade_core.errors import InvalidArgumentError
from cascade_core.features import FeatureLayout
from cascade_core.registry import RankerSpec
from cascade_core.stages import CandidateSet, Query
from cascade_features.hydrator import (
    FEATURES_COLUMN,
    ITEM_MISSING_COLUMN,
    USER_MISSING_PARAM,
    FeatureDefaults,
    OnlineFeatureHydrator,
    assemble,
    defaults_only,
)
from cascade_features.service import validate
from cascade_features.stores import FetchResult, OnlineReader, item_view, user_view


@pytest.fixture
def defaults(layout: FeatureLayout, feature_defaults: list[float]) -> FeatureDefaults:
    return FeatureDefaults.from_ranker(RankerSpec(feature_names=layout.names, feature_defaults=feature_defaults))


def test_defaults_slices_follow_the_layout(defaults: FeatureDefaults, feature_defaults: list[float]):
    lay = defaults.layout
    np.testing.assert_allclose(defaults.user, feature_defaults[: lay.user_dim])
    np.testing.assert_allclose(defaults.item, feature_defaults[lay.user_dim : lay.user_dim + lay.item_dim])


def test_defaults_of_wrong_length_rejected(layout: FeatureLayout):
    with pytest.raises(ValueError, match="feature_defaults has 3 values, expected 14"):
        FeatureDefaults.from_ranker(RankerSpec(feature_names=layout.names, feature_defaults=[0.0] * 3))


def test_assemble_substitutes_defaults_for_missing_rows(defaults: FeatureDefaults):
    lay = defaults.layout
    rng = np.random.default_rng(0)
    user = rng.random(lay.user_dim).astype(np.float32)
    items = rng.random((4, lay.item_dim)).astype(np.float32)
    found = np.array([True, False, True, False])
    items_stored = np.where(found[:, None], items, 0).astype(np.float32)
    scores = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
    a = assemble(defaults, FetchResult(user, True, items_stored, found), scores)
    expected_items = np.where(found[:, None], items, defaults.item[None, :])
    np.testing.assert_array_equal(a.matrix, lay.assemble(user, expected_items, scores))
    assert a.missing_items == 2 and not a.user_missing
    assert a.item_missing.tolist() == [False, True, False, True]
    # the cross feature of a default row uses the default item vector
    u, i = lay.user_dim, lay.item_dim
    np.testing.assert_array_equal(a.matrix[1, u : u + i], defaults.item)
    assert a.matrix[1, u + i] == np.float32(-1.0)


def test_assemble_missing_user_uses_user_defaults(defaults: FeatureDefaults):
    lay = defaults.layout
    items = np.ones((2, lay.item_dim), np.float32)
    a = assemble(defaults, FetchResult(np.zeros(lay.user_dim, np.float32), False, items, np.ones(2, bool)), None)
    assert a.user_missing and a.missing_items == 0
    np.testing.assert_array_equal(a.matrix[:, : lay.user_dim], np.tile(defaults.user, (2, 1)))
    assert not a.matrix[:, lay.user_dim + lay.item_dim].any()  # no retrieval scores -> 0


def test_defaults_only_matrix(defaults: FeatureDefaults):
    a = defaults_only(defaults, 3, None)
    assert a.matrix.shape == (3, defaults.layout.dim) and a.user_missing and a.missing_items == 3
    np.testing.assert_array_equal(a.matrix[0], a.matrix[2])


class _TableReader(OnlineReader):
    """In-memory reader over a dict: exercises the stage wiring (stores have their own contract suite)."""

    type = "table"

    def __init__(self, users: dict, items: dict, user_dim: int, item_dim: int) -> None:
        super().__init__("t", user_view(user_dim), item_view(item_dim))
        self.users, self.items = users, items

    async def fetch(self, user_id, item_ids):
        u = self.users.get(user_id)
        mat = np.zeros((len(item_ids), self.item.dim), np.float32)
        found = np.array([i in self.items for i in item_ids], bool)
        for r, i in enumerate(item_ids):
            if i in self.items:
                mat[r] = self.items[i]
        return FetchResult(u if u is not None else np.zeros(self.user.dim, np.float32), u is not None, mat, found)


async def test_hydrator_stage_columns(defaults: FeatureDefaults):
    lay = defaults.layout
    reader = _TableReader({"u": np.full(lay.user_dim, 0.5, np.float32)},
                          {"a": np.full(lay.item_dim, 1.0, np.float32)}, lay.user_dim, lay.item_dim)
    h = OnlineFeatureHydrator(reader, defaults)
    q = Query(user_id="u", num_items=2, request_id="r")
    cands = CandidateSet(["a", "b"], {"retrieval_score": np.array([0.25, 0.75], np.float32)})
    cols = await h.apply(q, cands)
    assert set(cols) == set(h.outputs)
    assert cols[FEATURES_COLUMN].shape == (2, lay.dim)
    assert cols[ITEM_MISSING_COLUMN].tolist() == [False, True]
    assert q.params[USER_MISSING_PARAM] is False
    assert cols[FEATURES_COLUMN][:, lay.user_dim + lay.item_dim].tolist() == [0.25, 0.75]
    fb = h.fallback(q, cands)
    assert fb[ITEM_MISSING_COLUMN].all() and q.params[USER_MISSING_PARAM] is True
    cands.with_columns(**cols)  # one row per candidate


def test_hydrator_rejects_reader_of_other_layout(defaults: FeatureDefaults):
    with pytest.raises(ValueError, match="vector lengths"):
        OnlineFeatureHydrator(_TableReader({}, {}, 2, 2), defaults)


def _req(**kw) -> features_pb2.GetFeaturesRequest:
    return features_pb2.GetFeaturesRequest(**{"user_id": "u1", "item_ids": ["a", "b"], **kw})


def _validate(req):
    return validate(req, max_items=2000, default_service="ranker_v1")


def test_validate_accepts_good_request():
    v = _validate(_req(retrieval_scores=[0.1, 0.2]))
    assert v.item_ids == ["a", "b"] and v.feature_service == "ranker_v1"
    np.testing.assert_allclose(v.retrieval_scores, [0.1, 0.2])
    assert _validate(_req()).retrieval_scores is None
    assert _validate(_req(item_ids=[])).item_ids == []
    assert _validate(_req(item_ids=["x"] * 2000)).item_ids == ["x"] * 2000


@pytest.mark.parametrize("req, field", [
    (_req(user_id=""), "user_id"),
    (_req(item_ids=["x"] * 2001), "item_ids"),
    (_req(item_ids=["a", ""]), "item_ids"),
    (_req(retrieval_scores=[0.1]), "retrieval_scores"),
    (_req(retrieval_scores=[0.1, float("nan")]), "retrieval_scores"),
    (_req(feature_service="ranker_v9"), "feature_service"),
])
def test_validate_names_the_field(req, field):
    with pytest.raises(InvalidArgumentError) as e:
        _validate(req)
    assert e.value.field == field and e.value.message.startswith(f"{field}: ")
