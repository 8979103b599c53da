"""Byte-level codecs of Feast's online rows, used by the fast readers — without importing Feast.

Importing anything from ``feast`` loads the whole SDK (pandas, dask, and torch when installed:
~20 s and hundreds of MB in the serving process), so the hot path re-states the three encodings it
needs, byte for byte:

* entity keys: Feast's ``serialize_entity_key`` (version 3) for one string join key:
  ``<u32 n_keys=1><u32 STRING=2><u32 len><join key><u32 STRING=2><u32 len><value>``;
* Redis hash fields: Feast's ``_mmh3("<view>:<feature>")`` = murmur3-32 (unsigned, seed 0) as 4
  little-endian bytes;
* values: a packed ``Array(Float32)`` feature is a ``ValueProto`` whose ``float_list_val`` (field
  16) holds ``FloatList.val`` (field 1, packed). For a fixed vector length every serialized value
  is the same header followed by ``4 * dim`` little-endian float32 bytes, so a batch decodes with
  one ``np.frombuffer`` instead of one protobuf parse per row.

``tests/unit/features/test_features_codec.py`` checks all three against Feast's own functions and
the contract suite checks whole reads against ``get_online_features``, so a Feast upgrade that
changes an encoding fails the tests instead of serving wrong features. Values that are valid
protobuf but not in the canonical form fall back to Feast's ``ValueProto`` parser (imported lazily).
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any, Sequence

import mmh3
import numpy as np

ENTITY_KEY_SERIALIZATION_VERSION = 3
VALUE_TYPE_STRING = 2  # feast.types.ValueType.STRING
_U32 = struct.Struct("<I")
_STRING_TAG = _U32.pack(VALUE_TYPE_STRING)
_FLOAT_LIST_VAL_TAG = b"\x82\x01"  # field 16 (float_list_val), wire type 2
_FLOATLIST_VAL_TAG = b"\x0a"  # field 1 (val), wire type 2 (packed)


class EntityKeyEncoder:
    """Serializes string entity ids of one join key exactly like Feast's online stores do."""

    __slots__ = ("join_key", "_prefix")

    def __init__(self, join_key: str) -> None:
        self.join_key = join_key
        jk = join_key.encode("utf-8")
        self._prefix = _U32.pack(1) + _STRING_TAG + _U32.pack(len(jk)) + jk + _STRING_TAG

    @property
    def prefix(self) -> bytes:
        """The bytes every serialized key of this join key starts with (then ``<u32 len><value>``)."""
        return self._prefix

    def encode(self, entity_id: str) -> bytes:
        raw = entity_id.encode("utf-8")
        return self._prefix + _U32.pack(len(raw)) + raw

    def encode_many(self, entity_ids: Sequence[str]) -> list[bytes]:
        p, pack = self._prefix, _U32.pack
        out = []
        for e in entity_ids:
            raw = e.encode("utf-8")
            out.append(p + pack(len(raw)) + raw)
        return out


def redis_field(view: str, feature: str) -> bytes:
    """Feast's Redis hash field of ``view:feature`` (``feast.infra.online_stores.helpers._mmh3``)."""
    return _U32.pack(mmh3.hash(f"{view}:{feature}", signed=False))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@lru_cache(maxsize=64)
def float_list_header(dim: int) -> bytes:
    """The bytes preceding the float payload in a serialized ``ValueProto`` of ``dim`` floats."""
    if dim <= 0:
        raise ValueError(f"vector length must be positive, got {dim}")
    payload = 4 * dim
    inner = _FLOATLIST_VAL_TAG + _varint(payload)
    return _FLOAT_LIST_VAL_TAG + _varint(len(inner) + payload) + inner


@lru_cache(maxsize=64)
def _canonical(dim: int) -> tuple[bytes, np.ndarray]:
    header = float_list_header(dim)
    return header, np.frombuffer(header, dtype=np.uint8)


def _parse_value(raw: bytes) -> Any:
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto  # slow path only: heavy import

    vp = ValueProto()
    vp.ParseFromString(raw)
    return vp


def decode_float_lists(values: Sequence[bytes | None], dim: int, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode serialized ``ValueProto`` float lists into ``(float32 [n, dim], found bool [n])``.

    ``None`` / empty bytes (no stored row, or an unset value) give a zero row with ``found=False``.
    A stored vector whose length is not ``dim`` is a layout mismatch between the manifest and the
    online store (wrong version materialized): raised as ``ValueError`` naming ``field``.
    """
    n = len(values)
    if n == 0:
        return np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=bool)
    header, header_row = _canonical(dim)
    size = len(header) + 4 * dim
    try:
        # len(None) raises TypeError: a missing row takes the general path below
        every_row_canonical_size = set(map(len, values)) == {size}  # type: ignore[arg-type]
    except TypeError:
        every_row_canonical_size = False
    if every_row_canonical_size:  # the common case: every row present, checked and decoded in bulk
        buf = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(n, size)  # type: ignore[arg-type]
        if (buf[:, : len(header)] == header_row).all():
            return buf[:, len(header):].copy().view("<f4").astype(np.float32, copy=False), np.ones(n, bool)
    out = np.zeros((n, dim), dtype=np.float32)
    found = np.zeros(n, dtype=bool)
    idx = [i for i, v in enumerate(values) if v]
    if not idx:
        return out, found
    present: list[bytes] = [values[i] for i in idx]  # type: ignore[misc]  # None/b"" filtered out
    if all(len(v) == size and v.startswith(header) for v in present):
        buf = np.frombuffer(b"".join(present), dtype=np.uint8).reshape(len(present), size)
        out[idx] = buf[:, len(header):].copy().view("<f4")
        found[idx] = True
        return out, found
    for i, raw in zip(idx, present):  # not the canonical encoding: parse each row with protobuf
        if len(raw) == size and raw.startswith(header):
            out[i] = np.frombuffer(raw, dtype="<f4", offset=len(header))
            found[i] = True
            continue
        vp = _parse_value(raw)
        kind = vp.WhichOneof("val")
        if kind is None:
            continue
        if kind != "float_list_val":
            raise ValueError(f"{field}: stored value is {kind}, expected float_list_val")
        vec = vp.float_list_val.val
        if len(vec) != dim:
            raise ValueError(
                f"{field}: stored vector has {len(vec)} values, expected {dim}: the online store holds "
                "another layout (materialize the served version: python -m cascade_features.repo "
                "apply-materialize --version <served version>)"
            )
        out[i] = np.asarray(vec, dtype=np.float32)
        found[i] = True
    return out, found


# -- scalar / string-list values (the real-time views) ---------------------------------------------
_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _signed64(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def _string_list(buf: bytes) -> list[str]:
    out, pos = [], 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        if tag != 0x0A:  # StringList.val = 1, length-delimited
            raise ValueError("not a StringList")
        n, pos = _read_varint(buf, pos)
        out.append(buf[pos : pos + n].decode("utf-8"))
        pos += n
    return out


def decode_value(raw: bytes | None) -> Any:
    """A serialized Feast ``ValueProto`` holding an int64/int32/double/float/string or a string list ->
    the Python value (None for a missing or unset value). Other kinds go through Feast's parser."""
    if not raw:
        return None
    try:
        tag, pos = _read_varint(raw, 0)
        field, wire = tag >> 3, tag & 7
        if field in (3, 4) and wire == 0:  # int32_val, int64_val
            v, pos = _read_varint(raw, pos)
            value: Any = _signed64(v) if field == 4 else _signed64(v) & 0xFFFFFFFF
            if field == 3 and value >= 1 << 31:
                value -= 1 << 32
        elif field == 5 and wire == 1:  # double_val
            value, pos = _DOUBLE.unpack_from(raw, pos)[0], pos + 8
        elif field == 6 and wire == 5:  # float_val
            value, pos = _FLOAT.unpack_from(raw, pos)[0], pos + 4
        elif field in (2, 12) and wire == 2:  # string_val, string_list_val
            n, pos = _read_varint(raw, pos)
            body = raw[pos : pos + n]
            value = body.decode("utf-8") if field == 2 else _string_list(body)
            pos += n
        else:
            raise ValueError("slow path")
        if pos != len(raw):
            raise ValueError("trailing bytes")
        return value
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        vp = _parse_value(raw)
        kind = vp.WhichOneof("val")
        if kind is None:
            return None
        v = getattr(vp, kind)
        return list(v.val) if hasattr(v, "val") else v
