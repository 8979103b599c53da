"""gRPC length-prefixed bodies and the request mix."""

from __future__ import annotations

import pytest
from bench_frames import MIX, class_counts, grpc_frame, parse_frames, request_mix, write_bodies
from cascade.router.v1 import router_pb2


def test_frame_is_flag_length_message() -> None:
    assert grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert grpc_frame(b"") == b"\x00\x00\x00\x00\x00"


def test_parse_frames_round_trip_and_errors() -> None:
    data = grpc_frame(b"one") + grpc_frame(b"") + grpc_frame(b"x" * 300)
    assert parse_frames(data) == [b"one", b"", b"x" * 300]
    with pytest.raises(ValueError, match="truncated"):
        parse_frames(b"\x00\x00")
    with pytest.raises(ValueError, match="wants 5 bytes"):
        parse_frames(b"\x00\x00\x00\x00\x05ab")
    with pytest.raises(ValueError, match="compressed"):
        parse_frames(b"\x01\x00\x00\x00\x00")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 24, 100])
def test_class_counts_sum_and_cover_every_class(n: int) -> None:
    counts = class_counts(n)
    assert sum(counts.values()) == n
    if n >= len(MIX):
        assert all(c >= 1 for c in counts.values())


def test_class_counts_follow_the_weights() -> None:
    assert class_counts(100) == {"known": 70, "known+exclude": 15, "cold": 15}
    with pytest.raises(ValueError):
        class_counts(0)


def test_request_mix_is_seeded_and_realistic(tmp_path) -> None:
    users = [str(i) for i in range(1000)]
    items = [f"i{i}" for i in range(5000)]
    popular = items[:50]
    a = request_mix(users, items, popular, n_bodies=24, seed=3)
    assert a == request_mix(users, items, popular, n_bodies=24, seed=3)
    kinds = [r.kind for r in a]
    assert kinds.count("cold") >= 1 and kinds.count("known+exclude") >= 1
    assert len({r.user_id for r in a}) == 24
    for r in a:
        if r.kind == "cold":
            assert r.user_id not in users and not r.exclude_item_ids
        else:
            assert r.user_id in users
        if r.kind == "known+exclude":
            assert len(r.exclude_item_ids) == 5 and len(set(r.exclude_item_ids) & set(popular)) >= 2
    paths = write_bodies(a, tmp_path)
    assert len(paths) == 24
    (msg,) = parse_frames(paths[0].read_bytes())
    req = router_pb2.RecommendRequest.FromString(msg)
    assert req.user_id == a[0].user_id and req.num_items == a[0].num_items
    assert list(req.exclude_item_ids) == list(a[0].exclude_item_ids)
