"""Fuzzing RecommendationService/Recommend on a real router process over gRPC.

Random user ids (huge, any Unicode but lone surrogates, NUL and control characters), num_items (negative,
past 200, int32 extremes), context maps (many keys, huge values, ``cascade.*`` keys), thousands of
excluded ids and odd request ids; then raw bytes that are not a RecommendRequest, sent with a generic
unary call. Each test runs hypothesis examples (shrinkable, with pinned regression examples) and then
a seeded bulk loop of the same generators (cheap volume; a failure names its seed). Every answer must be OK (a well-formed list) or a documented status with a message; the
process must stay alive and SERVING, log no bug, and its RSS must stay bounded.

The router's downstreams are closed ports (a real outage): it serves the popularity fallback, the
path every storefront request takes while retrieval is down.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
import grpc
import pytest
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_platform.procs import ServiceProcess
from fuzz_support import (
    ALLOWED_CODES,
    GRPC_MAX_RECEIVE,
    TALLY,
    assert_no_bug_logged,
    assert_serving,
    bulk,
    choose,
    fuzz_settings,
    pick,
    rand_text,
    rss_kib,
)
from hypothesis import example, given
from hypothesis import strategies as st

pytestmark = [pytest.mark.security, pytest.mark.integration]

METHOD = "/cascade.router.v1.RecommendationService/Recommend"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
N_HYPOTHESIS, N_BULK = 500, 2500  # structured requests: hypothesis examples + seeded bulk inputs
N_RAW_HYPOTHESIS, N_RAW_BULK = 300, 1200  # raw byte strings
RSS_GROWTH_LIMIT_KIB = 256 * 1024  # generous: allocator arenas keep some of the MiB-sized requests

# -- generators ------------------------------------------------------------------------------------
# protobuf strings are UTF-8: any code point but lone surrogates can be sent (fuzz_support.rand_text).
# Each field has a tuple of generators (random.Random -> value): hypothesis picks one and a seed
# (fuzz_support.pick), the bulk loop picks at random (fuzz_support.choose).
ODD = ["\x00", "\n", "\t", " ", "\u200b", "\u202e", "\ufeff", "\U0001f600", "é", "𝔘", "\x7f", "\u0085"]
FORCE = ["ranker-demo/treatment", "ranker-demo/control", "holdout", "default", "treatment", "nope/nope",
         "ranker-demo/", "/", ""]


def _short(r: random.Random) -> str:
    return rand_text(r, r.randint(0, 24))


def _context_entries(r: random.Random) -> dict[str, str]:
    out = {}
    for _ in range(r.randint(0, 6)):
        key = r.choice([_short(r), "cascade.force_variant", "cascade." + _short(r), "", rand_text(r, 5000)])
        out[key] = r.choice([_short(r), r.choice(FORCE), rand_text(r, r.randint(1000, 20_000)), ""])
    return out


USER_IDS = (
    lambda r: r.choice(["1", "7", "u3", "9999999", "qa-treatment", "u\u00e9", "\U0001f600"]),  # valid
    _short,
    lambda r: _short(r) + r.choice(ODD) + _short(r),
    lambda r: rand_text(r, r.randint(120, 140)),  # around the 128-character limit
    lambda r: rand_text(r, r.randint(129, 300_000)),
    lambda r: r.choice(["", " ", "   ", "\t", "\x00"]),
)
NUM_ITEMS = (
    lambda r: r.randint(0, 250),
    lambda r: r.choice([INT32_MIN, INT32_MIN + 1, -1, 0, 1, 200, 201, INT32_MAX]),
    lambda r: r.randint(INT32_MIN, INT32_MAX),
)
CONTEXTS = (
    lambda r: {},
    _context_entries,
    lambda r: {"cascade.force_variant": r.choice(FORCE + [_short(r)])},
    lambda r: {f"{_short(r)}{i}": _short(r) for i in range(r.randint(60, 200))},  # the limit is 64
)
EXCLUDES = (
    lambda r: [],
    lambda r: [_short(r) for _ in range(r.randint(1, 6))],
    lambda r: [str(i) for i in range(r.randint(900, 3_000))],  # thousands (the limit is 1000)
    lambda r: [rand_text(r, r.randint(100, 400))] * r.randint(1, 300),
    lambda r: ["i" + str(r.randint(0, 80)) for _ in range(r.randint(1, 40))] + [""] * r.randint(0, 1),
)
REQUEST_IDS = (
    lambda r: "",
    lambda r: rand_text(r, r.randint(1, 24), "ascii"),
    _short,
    lambda r: _short(r) + "\x00",
    lambda r: rand_text(r, r.randint(100, 1_000)),
)


VALID = {
    "user_id": USER_IDS[0],
    "num_items": lambda r: r.randint(0, 200),
    "context": lambda r: r.choice([{}, {"page": "home"}, {"cascade.force_variant": r.choice(FORCE[:5])}]),
    "exclude_item_ids": EXCLUDES[4],
    "request_id": REQUEST_IDS[1],
}
FUZZED = {"user_id": USER_IDS, "num_items": NUM_ITEMS, "context": CONTEXTS, "exclude_item_ids": EXCLUDES,
          "request_id": REQUEST_IDS}


def gen_request(r: random.Random) -> router_pb2.RecommendRequest:
    """Half the time every field fuzzed; else a valid request with at most one field fuzzed (so the
    accepting path -- assignment, pipeline, fallbacks -- sees odd but valid input too)."""
    if r.random() < 0.5:
        return router_pb2.RecommendRequest(**{f: choose(r, gens) for f, gens in FUZZED.items()})
    fields = {f: gen(r) for f, gen in VALID.items()}
    odd = r.choice([*FUZZED, None])
    if odd is not None:
        fields[odd] = choose(r, FUZZED[odd])
    return router_pb2.RecommendRequest(**fields)


recommend_requests = st.builds(router_pb2.RecommendRequest, user_id=pick(*USER_IDS), num_items=pick(*NUM_ITEMS),
                               context=pick(*CONTEXTS), exclude_item_ids=pick(*EXCLUDES),
                               request_id=pick(*REQUEST_IDS))


def _valid_wire(r: random.Random) -> bytes:
    return router_pb2.RecommendRequest(
        user_id=r.choice(["1", "u2", "é"]), num_items=r.randint(-5, 300),
        context={_short(r): _short(r) for _ in range(r.randint(0, 3))},
        exclude_item_ids=[_short(r) for _ in range(r.randint(0, 3))],
    ).SerializeToString()


def _mutated(r: random.Random) -> bytes:
    """A valid message with bytes overwritten: wrong wire types, bad lengths, invalid UTF-8 in strings."""
    b = bytearray(_valid_wire(r))
    for _ in range(r.randint(1, 6)):
        if b:
            b[r.randrange(len(b))] = r.randrange(256)
    return bytes(b)


RAW = (
    lambda r: r.randbytes(r.randint(0, 512)),
    lambda r: r.randbytes(r.randint(512, 20_000)),
    _mutated,
    lambda r: _valid_wire(r) + r.randbytes(r.randint(1, 64)),  # trailing garbage
    lambda r: (lambda w: w[: r.randrange(len(w))] if w else w)(_valid_wire(r)),  # truncated
    lambda r: bytes([r.choice([0x0A, 0x12, 0x1A, 0x22, 0x2A])]) + r.randbytes(r.randint(0, 12)),  # bad lengths
)


# -- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_channel(fuzz_router: ServiceProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fuzz_router.target) as ch:
        yield ch


def _warm_rss(stub: router_pb2_grpc.RecommendationServiceStub, pid: int) -> int:
    """RSS once the process has served a few requests of every size class (imports, arenas, caches)."""
    for i in range(30):
        stub.Recommend(router_pb2.RecommendRequest(user_id=str(i), num_items=10), timeout=60)
        try:
            stub.Recommend(router_pb2.RecommendRequest(user_id="x" * 300_000), timeout=60)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    return rss_kib(pid)


def _check_ok(req: router_pb2.RecommendRequest, resp: router_pb2.RecommendResponse) -> None:
    """An OK answer is a well-formed list that honours the request."""
    want = req.num_items or 10
    assert 1 <= want <= 200, f"accepted num_items={req.num_items}"
    assert len(resp.items) <= want
    assert [it.rank for it in resp.items] == list(range(1, len(resp.items) + 1))
    assert not {it.item_id for it in resp.items} & set(req.exclude_item_ids)
    assert resp.variant
    if req.request_id:
        assert resp.request_id == req.request_id


# -- tests -------------------------------------------------------------------------------------------
def test_fuzzed_recommend_requests(fuzz_router: ServiceProcess, fuzz_channel: grpc.Channel) -> None:
    stub = router_pb2_grpc.RecommendationServiceStub(fuzz_channel)
    assert fuzz_router.proc is not None
    pid = fuzz_router.proc.pid
    rss_before = _warm_rss(stub, pid)
    seen: Counter[str] = Counter()

    def check(req: router_pb2.RecommendRequest, where: str) -> None:
        TALLY["recommend"] += 1
        try:
            resp = stub.Recommend(req, timeout=60)
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""
            seen[code.name] += 1
            assert code in ALLOWED_CODES, f"{where}: {code.name}: {details[:500]} for {_show(req)}"
            assert details.strip(), f"{where}: {code.name} without a message"
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # only the 4 MiB receive limit here
                assert req.ByteSize() > GRPC_MAX_RECEIVE, f"{where}: {details}"
            if code == grpc.StatusCode.INVALID_ARGUMENT:  # the message names the field to fix
                assert details.split(":", 1)[0] in {
                    "user_id", "num_items", "context", "exclude_item_ids", "request_id", "request"
                }, f"{where}: {details}"
            return
        seen["OK"] += 1
        _check_ok(req, resp)

    @fuzz_settings(N_HYPOTHESIS)
    @given(req=recommend_requests)
    @example(req=router_pb2.RecommendRequest(user_id="1", num_items=INT32_MIN))
    @example(req=router_pb2.RecommendRequest(user_id="1", num_items=INT32_MAX))
    @example(req=router_pb2.RecommendRequest(user_id="\x00", num_items=5))
    @example(req=router_pb2.RecommendRequest(user_id="1", request_id="r\u00dc"))  # was INTERNAL: non-ASCII header
    @example(req=router_pb2.RecommendRequest(user_id="1", context={"cascade.force_variant": "x" * 1024}))
    @example(req=router_pb2.RecommendRequest(user_id="1", exclude_item_ids=["i"] * 5000))
    @example(req=router_pb2.RecommendRequest(user_id="1", context={"v": "x" * 5_000_000}))  # > 4 MiB
    def fuzz(req: router_pb2.RecommendRequest) -> None:
        check(req, "hypothesis")

    fuzz()
    for seed, r in bulk(N_BULK, "recommend"):
        check(gen_request(r), f"bulk seed {seed}")

    assert seen["OK"] > 0 and seen["INVALID_ARGUMENT"] > 0, seen  # both paths exercised
    assert_serving(fuzz_router)
    assert_no_bug_logged(fuzz_router.log_path)
    rss_after = rss_kib(pid)
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB, (
        f"router RSS grew from {rss_before} KiB to {rss_after} KiB over {sum(seen.values())} requests"
    )
    print(f"recommend fuzz: {dict(seen)}; RSS {rss_before} -> {rss_after} KiB")


def test_fuzzed_raw_protobuf_bytes(fuzz_router: ServiceProcess, fuzz_channel: grpc.Channel) -> None:
    """Bytes that are not a RecommendRequest: INVALID_ARGUMENT naming the message, never UNKNOWN."""
    call = fuzz_channel.unary_unary(METHOD)  # no serializers: raw bytes in and out
    assert fuzz_router.proc is not None
    pid = fuzz_router.proc.pid
    rss_before = rss_kib(pid)
    seen: Counter[str] = Counter()

    def check(raw: bytes, where: str) -> None:
        TALLY["recommend-raw-bytes"] += 1
        try:
            out = call(raw, timeout=60)
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""
            seen[code.name] += 1
            assert code in ALLOWED_CODES, f"{where}: {code.name}: {details[:500]} for {raw[:64]!r}"
            assert details.strip(), where
            return
        seen["OK"] += 1
        router_pb2.RecommendResponse.FromString(out)  # an OK answer is a real response
        req = router_pb2.RecommendRequest.FromString(raw)  # ... to bytes that do parse
        assert 0 <= req.num_items <= 200, where

    @fuzz_settings(N_RAW_HYPOTHESIS)
    @given(raw=pick(*RAW))
    @example(raw=b"\xff\xff\xff\xff")
    @example(raw=b"\x0a\x05\xff\xfe\xfd\xfc\xfb")  # user_id: invalid UTF-8
    @example(raw=b"\x0a\xff\xff\xff\xff\x0f")  # user_id: length past the end
    @example(raw=b"\x10" + b"\xff" * 10)  # num_items: varint too long
    @example(raw=b"\x1a\x80\x80\x80\x80\x08")  # context entry of 2 GiB
    def fuzz(raw: bytes) -> None:
        check(raw, "hypothesis")

    fuzz()
    for seed, r in bulk(N_RAW_BULK, "raw"):
        check(choose(r, RAW), f"bulk seed {seed}")

    assert seen["INVALID_ARGUMENT"] > 0, seen
    assert_serving(fuzz_router)
    assert_no_bug_logged(fuzz_router.log_path)
    rss_after = rss_kib(pid)
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB, f"RSS {rss_before} -> {rss_after} KiB"
    print(f"raw-bytes fuzz: {dict(seen)}; RSS {rss_before} -> {rss_after} KiB")


def _show(req: router_pb2.RecommendRequest) -> str:
    text = str(req)
    return text if len(text) < 600 else text[:600] + f"... ({req.ByteSize()} bytes)"
