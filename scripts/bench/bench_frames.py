"""Raw gRPC request bodies for h2load, and the bench's request mix.

A unary gRPC request body is one length-prefixed message: 1 byte compressed-flag (0), 4 bytes
big-endian message length, then the serialized protobuf. h2load POSTs that file verbatim with
``content-type: application/grpc`` and ``te: trailers``.

h2load sends one body file per process, so the mix is a set of distinct bodies, each driven by its
own h2load process at an equal share of the rate; class weights are realised by body counts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

_PREFIX = struct.Struct(">BI")

# (class name, share of the mix). Known users are the storefront's normal traffic; exclusions model a
# cart / already-shown list; cold users (no embedding, no stored features) exercise the popularity path.
MIX: tuple[tuple[str, float], ...] = (("known", 0.70), ("known+exclude", 0.15), ("cold", 0.15))


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return _PREFIX.pack(0, len(message)) + message


def parse_frames(data: bytes) -> list[bytes]:
    """Split a gRPC body into its messages (raises ValueError on a truncated or compressed frame)."""
    out, pos = [], 0
    while pos < len(data):
        if len(data) - pos < _PREFIX.size:
            raise ValueError(f"truncated gRPC frame header at byte {pos}")
        flag, size = _PREFIX.unpack_from(data, pos)
        if flag != 0:
            raise ValueError(f"compressed gRPC frame at byte {pos} is not supported")
        pos += _PREFIX.size
        if len(data) - pos < size:
            raise ValueError(f"gRPC frame at byte {pos} wants {size} bytes, {len(data) - pos} left")
        out.append(data[pos:pos + size])
        pos += size
    return out


@dataclass(frozen=True)
class BenchRequest:
    """One body of the mix: its class, the request fields and the file h2load posts."""

    kind: str
    user_id: str
    num_items: int
    exclude_item_ids: tuple[str, ...]

    def to_proto(self):  # noqa: ANN201 - cascade.router.v1.RecommendRequest
        from cascade.router.v1 import router_pb2

        return router_pb2.RecommendRequest(
            user_id=self.user_id, num_items=self.num_items, exclude_item_ids=list(self.exclude_item_ids),
            request_id="",  # let the router generate one per call
        )

    def body(self) -> bytes:
        return grpc_frame(self.to_proto().SerializeToString())


def class_counts(n_bodies: int, mix: Sequence[tuple[str, float]] = MIX) -> dict[str, int]:
    """Bodies per class (largest remainder; every class gets at least one when n_bodies allows)."""
    if n_bodies < 1:
        raise ValueError("n_bodies must be >= 1")
    total = sum(w for _, w in mix)
    raw = [(name, n_bodies * w / total) for name, w in mix]
    counts = {name: int(x) for name, x in raw}
    if n_bodies >= len(mix):
        for name in counts:
            counts[name] = max(counts[name], 1)
    while sum(counts.values()) > n_bodies:
        biggest = max(counts, key=lambda k: counts[k])
        counts[biggest] -= 1
    by_remainder = sorted(raw, key=lambda r: r[1] - int(r[1]), reverse=True)
    i = 0
    while sum(counts.values()) < n_bodies:
        counts[by_remainder[i % len(by_remainder)][0]] += 1
        i += 1
    return counts


def request_mix(user_ids: Sequence[str], item_ids: Sequence[str], popular_ids: Sequence[str], *,
                n_bodies: int = 24, num_items: int = 10, seed: int = 0) -> list[BenchRequest]:
    """Seeded mix of distinct requests: known users, known users with 5 exclusions (2 popular items,
    which every candidate list may contain, + 3 random catalog items) and unknown (cold) users."""
    rng = np.random.default_rng(seed)
    counts = class_counts(n_bodies)
    users = [user_ids[int(i)] for i in rng.choice(len(user_ids), size=n_bodies, replace=False)]
    out: list[BenchRequest] = []
    for kind, n in counts.items():
        for _ in range(n):
            if kind == "cold":
                out.append(BenchRequest(kind, f"cold-{int(rng.integers(1 << 30))}", num_items, ()))
                continue
            excl: tuple[str, ...] = ()
            if kind == "known+exclude":
                pops = [popular_ids[int(i)] for i in rng.choice(min(20, len(popular_ids)), 2, replace=False)]
                rand = [item_ids[int(i)] for i in rng.choice(len(item_ids), 3, replace=False)]
                excl = tuple(pops + rand)
            out.append(BenchRequest(kind, users.pop(), num_items, excl))
    return out


def write_bodies(requests: Sequence[BenchRequest], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, r in enumerate(requests):
        p = out_dir / f"req{i:03d}-{r.kind.replace('+', '_')}.bin"
        p.write_bytes(r.body())
        paths.append(p)
    return paths
