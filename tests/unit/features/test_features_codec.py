"""Entity-key, field and value codecs of the fast path, checked against Feast's own serializers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import FloatList, Int64List
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from cascade_features.codec import EntityKeyEncoder, decode_float_lists, float_list_header, redis_field


@pytest.mark.parametrize("entity_id", ["u1", "", "item-123456789", "ünïcødé", "a" * 300])
def test_entity_key_matches_feast(entity_id: str):
    want = serialize_entity_key(
        EntityKey(join_keys=["user_id"], entity_values=[ValueProto(string_val=entity_id)]),
        entity_key_serialization_version=3,
    )
    enc = EntityKeyEncoder("user_id")
    assert enc.encode(entity_id) == want
    assert enc.encode_many([entity_id, entity_id]) == [want, want]


@pytest.mark.parametrize("view, feature", [("user_features", "user_vec"), ("item_features", "item_vec"),
                                           ("vüe", "f")])
def test_redis_field_matches_feast(view: str, feature: str):
    assert redis_field(view, feature) == _mmh3(f"{view}:{feature}")


@pytest.mark.parametrize("dim", [1, 2, 6, 22, 31, 32, 33, 100, 4095, 4096, 40000])  # varint length boundaries
def test_header_matches_protobuf(dim: int):
    full = ValueProto(float_list_val=FloatList(val=[0.5] * dim)).SerializeToString()
    assert full == float_list_header(dim) + np.full(dim, 0.5, "<f4").tobytes()


def test_serving_path_imports_neither_feast_nor_torch():
    """Feast's package import pulls pandas, dask and (when installed) torch: keep it out of serving."""
    code = ("import sys, cascade_features.service, cascade_features.stores.sqlite, "
            "cascade_features.stores.redis, cascade_features.__main__; "
            "print(sorted(m for m in ('feast', 'torch', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _ser(vec) -> bytes:
    return ValueProto(float_list_val=FloatList(val=list(vec))).SerializeToString()


@pytest.mark.parametrize("dim", [1, 6, 40, 200])  # 200 floats: the length varint takes two bytes
def test_decode_matches_protobuf(dim: int):
    rng = np.random.default_rng(dim)
    vecs = rng.standard_normal((5, dim)).astype(np.float32)
    raw = [_ser(v) for v in vecs]
    raw[2] = None
    mat, found = decode_float_lists(raw, dim, "f")
    assert found.tolist() == [True, True, False, True, True]
    np.testing.assert_array_equal(mat[found], vecs[found])
    assert not mat[2].any() and mat.dtype == np.float32
    assert raw[0].startswith(float_list_header(dim))


def test_decode_empty_value_counts_as_missing():
    mat, found = decode_float_lists([b"", ValueProto().SerializeToString(), None], 3, "f")
    assert not found.any() and mat.shape == (3, 3)


def test_decode_slow_path_accepts_non_canonical_encoding():
    # the same float list written as unpacked repeated floats (valid protobuf, different bytes)
    vec = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    inner = b"".join(b"\x0d" + v.tobytes() for v in vec)
    raw = b"\x82\x01" + bytes([len(inner)]) + inner
    assert ValueProto.FromString(raw).float_list_val.val == pytest.approx(vec.tolist())
    mat, found = decode_float_lists([raw, _ser(vec), None], 3, "f")
    assert found.tolist() == [True, True, False]
    np.testing.assert_array_equal(mat[:2], np.stack([vec, vec]))


def test_decode_wrong_length_names_the_feature():
    with pytest.raises(ValueError, match="item_features:item_vec: stored vector has 4 values, expected 3"):
        decode_float_lists([_ser([1, 2, 3, 4])], 3, "item_features:item_vec")


def test_decode_wrong_type_names_the_feature():
    raw = ValueProto(int64_list_val=Int64List(val=[1, 2, 3])).SerializeToString()
    with pytest.raises(ValueError, match="user_features:user_vec: stored value is int64_list_val"):
        decode_float_lists([raw], 3, "user_features:user_vec")


@pytest.mark.parametrize("dim", [1, 7, 200])
def test_decode_every_row_present(dim: int):
    """The bulk path (no missing row): same values as protobuf, a fresh writable float32 matrix."""
    vecs = np.random.default_rng(dim).standard_normal((9, dim)).astype(np.float32)
    mat, found = decode_float_lists([_ser(v) for v in vecs], dim, "f")
    assert found.all() and found.shape == (9,)
    np.testing.assert_array_equal(mat, vecs)
    assert mat.dtype == np.float32 and mat.flags.c_contiguous and mat.flags.writeable


def test_decode_same_size_other_value_is_not_read_as_floats():
    """A stored value with the canonical byte length but another header must not decode as floats."""
    vec = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    size = len(_ser(vec))
    other = ValueProto(string_val="x" * (size - 2)).SerializeToString()
    assert len(other) == size
    with pytest.raises(ValueError, match="f: stored value is string_val"):
        decode_float_lists([_ser(vec), other, _ser(vec)], 3, "f")
