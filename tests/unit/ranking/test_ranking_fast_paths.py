"""Ranking fast paths: one-comparison name check, sum-of-squares finiteness, wire-built responses.

Each must answer exactly as the straightforward code did: the same INVALID_ARGUMENT messages, never a
non-finite matrix accepted, a response equal (and serialized identically) to the constructor's.
"""

from __future__ import annotations

import numpy as np
import pytest

from cascade.ranking.v1 import ranking_pb2
from cascade_core.errors import InvalidArgumentError
from cascade_ranking.models import ServedModel
from cascade_ranking.service import ResponseBuilder, decode_matrix

NAMES = tuple(f"f{i:02d}" for i in range(48))
MODEL = ServedModel("ranker", "v7", NAMES)


def _req(x: np.ndarray, **kw) -> ranking_pb2.RankRequest:
    x = np.asarray(x, dtype="<f4")
    fields = dict(rows=x.shape[0], cols=x.shape[1], matrix=x.tobytes())
    fields.update(kw)
    # parsed from the wire like a served request
    return ranking_pb2.RankRequest.FromString(ranking_pb2.RankRequest(**fields).SerializeToString())


def _error(request, model=MODEL) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as ei:
        decode_matrix(request, model)
    return ei.value


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_any_non_finite_value_is_rejected_with_its_position(seed, bad):
    rng = np.random.default_rng(seed)
    rows = int(rng.choice([1, 2, 100, 170, 171, 400, 2000]))  # both sides of the fast check's size cap
    x = rng.normal(0, 1, (rows, 48)).astype(np.float32)
    r, c = int(rng.integers(rows)), int(rng.integers(48))
    x[r, c] = bad
    if seed % 3 == 0:  # a second bad value later in row-major order: the first one is named
        r2, c2 = min(rows - 1, r + 1), int(rng.integers(48))
        x[r2, c2] = -bad
    e = _error(_req(x, feature_names=list(NAMES)))
    assert e.field == "matrix"
    assert f"non-finite value at row {r}, column {c} ({NAMES[c]})" in str(e)


def test_inf_and_minus_inf_together_are_rejected():
    x = np.zeros((3, 48), np.float32)
    x[0, 1], x[2, 5] = np.inf, -np.inf
    assert "row 0, column 1 (f01)" in str(_error(_req(x)))


@pytest.mark.filterwarnings("ignore:overflow encountered in dot:RuntimeWarning")
def test_huge_finite_values_are_accepted_unchanged():
    # the sum of squares overflows to inf (numpy warns once): the exact check then accepts the matrix
    x = np.full((5, 48), 3e38, np.float32)
    x[1] = -np.finfo(np.float32).max
    x[2] = np.finfo(np.float32).tiny / 4  # subnormals are finite
    got = decode_matrix(_req(x), MODEL)
    np.testing.assert_array_equal(got, x)
    assert got.shape == (5, 48) and got.dtype == np.float32


@pytest.mark.parametrize("rows", [0, 1, 100, 2000])
def test_finite_matrices_decode_to_the_same_values(rows):
    x = np.random.default_rng(rows).normal(0, 10, (rows, 48)).astype(np.float32)
    got = decode_matrix(_req(x, feature_names=list(NAMES)), MODEL)
    np.testing.assert_array_equal(got, x)
    assert got.shape == (rows, 48)


def test_feature_name_mismatches_give_the_same_messages():
    x = np.zeros((2, 48), np.float32)
    for i in (0, 17, 47):
        names = list(NAMES)
        names[i] = "other"
        e = _error(_req(x, feature_names=names))
        assert e.field == "feature_names"
        assert f"position {i}: expected {NAMES[i]!r}, got 'other'" in str(e)
    e = _error(_req(x, feature_names=list(NAMES[:47])))
    assert "47 names sent, ranker v7 has 48" in str(e)
    e = _error(_req(x, feature_names=[*NAMES, "extra"]))
    assert "49 names sent, ranker v7 has 48" in str(e)
    # a mismatch inside the common prefix is reported before the count, as before
    e = _error(_req(x, feature_names=["zz", *NAMES[1:40]]))
    assert "position 0: expected 'f00', got 'zz'" in str(e)
    # names omitted: not checked; names equal: accepted
    assert decode_matrix(_req(x), MODEL).shape == (2, 48)
    assert decode_matrix(_req(x, feature_names=list(NAMES)), MODEL).shape == (2, 48)


@pytest.mark.parametrize("n", [0, 1, 2, 31, 32, 33, 100, 1000, 2000])
def test_built_response_equals_the_constructed_one(n):
    rng = np.random.default_rng(n)
    scores = rng.normal(0, 100, n).astype(np.float32)
    special = [0.0, -0.0, np.float32(1e-42), np.finfo(np.float32).max, -1.5]
    scores[: min(n, len(special))] = special[: min(n, len(special))]
    builder = ResponseBuilder()
    for name, version in (("ranker", "v1"), ("ranker", "v2-with-a-longer-version-id"), ("ranker", "v1")):
        got = builder.build(name, version, scores)
        want = ranking_pb2.RankResponse(scores=scores.tolist(), model_name=name, model_version=version)
        assert got == want
        assert got.SerializeToString() == want.SerializeToString()
        assert list(got.scores) == scores.tolist()
        assert (got.model_name, got.model_version) == (name, version)


def test_built_response_from_float64_scores_rounds_like_the_constructor():
    scores = np.random.default_rng(3).normal(0, 1, 10)  # float64
    got = ResponseBuilder().build("r", "v", scores)
    assert got == ranking_pb2.RankResponse(scores=scores.tolist(), model_name="r", model_version="v")
