"""Fuzzing the HTTP gateway (a real uvicorn process) in front of the real router and a real broker.

``POST /v1/recommendations`` and ``POST /v1/events`` get random JSON (wrong types, lone surrogates,
huge and non-finite numbers, deep nesting, unknown and reserved fields), random bytes and wrong content
types. Every answer must be a success or a clean client error in the documented error body
(``{"error": {"code", "message"}}``) -- never a 5xx but 503 -- and the gateway must stay up.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from cascade_platform.procs import ServiceProcess
from cascade_stream.broker import create_topics
from fuzz_support import TALLY, bulk, choose, http_post, rand_text, start_gateway, tree_rss_kib
from router_procs import HttpProcess
from test_fuzz_events import json_value, near_valid, valid_event

pytestmark = [pytest.mark.security, pytest.mark.integration]

N_RECOMMEND, N_EVENTS = 500, 300
CLIENT_ERRORS = {400: "INVALID_ARGUMENT", 413: "INVALID_ARGUMENT"}
RSS_GROWTH_LIMIT_KIB = 256 * 1024


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory, fuzz_router: ServiceProcess, fuzz_broker) -> Iterator[HttpProcess]:
    topic = f"fuzz-{uuid.uuid4().hex[:8]}.user-events"
    create_topics(fuzz_broker.kafka_config(), [topic], partitions=1)
    gw = start_gateway(tmp_path_factory.mktemp("fuzz-gateway"), fuzz_router.target,
                       CASCADE_KAFKA__BOOTSTRAP_SERVERS=fuzz_broker.bootstrap, CASCADE_TOPICS__EVENTS=topic,
                       CASCADE_LOG_JSON="true")
    try:
        yield gw
    finally:
        gw.stop()


# -- generators --------------------------------------------------------------------------------------
def _recommend_doc(r: random.Random) -> Any:
    doc: dict[str, Any] = {"user_id": r.choice(["1", "7", "u3", "é", rand_text(r, r.randint(1, 20))])}
    if r.random() < 0.7:
        doc["num_items"] = r.randint(0, 200)
    for _ in range(r.randint(0, 3)):  # replace, drop or add fields
        op, name = r.random(), r.choice(["user_id", "num_items", "context", "exclude_item_ids", "request_id"])
        if op < 0.6:
            doc[name] = r.choice([json_value(r), _odd_string(r), r.choice([-1, 201, 2**31, -(2**31) - 1, 1e3, 5.5])])
        elif op < 0.8:
            doc.pop(name, None)
        else:
            doc[r.choice(["numItems", "cascade.force_variant", rand_text(r, 10), "x" * 5000])] = json_value(r)
    if r.random() < 0.15:
        doc["context"] = {r.choice(["cascade.force_variant", "page", _odd_string(r)]): r.choice(["holdout", _odd_string(r)])}
    return doc


def _odd_string(r: random.Random) -> str:
    return r.choice([
        "", " ", "\x00", "a\ud800", "\udfff", rand_text(r, r.randint(1, 30)), rand_text(r, r.randint(129, 4000)),
    ])


def _events_doc(r: random.Random, now_ms: int) -> Any:
    events = []
    for _ in range(r.randint(1, 4)):
        ev = r.choice([valid_event, valid_event, near_valid])(r)
        if isinstance(ev.get("timestamp"), int) and r.random() < 0.9:
            ev["timestamp"] = now_ms - r.randint(0, 60_000)
        events.append(ev)
    op = r.random()
    if op < 0.7:
        return {"events": events}
    if op < 0.8:
        return {"events": json_value(r)}
    if op < 0.9:
        return {"events": events, r.choice(["extra", "\ud800"]): 1}
    return json_value(r)


def _dumps(doc: Any, r: random.Random) -> bytes:
    if r.random() < 0.5:
        return json.dumps(doc).encode()
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")  # surrogates: invalid UTF-8


RAW_BODIES = (
    lambda r: r.randbytes(r.randint(0, 300)),
    lambda r: r.choice([b"[", b'{"a":', b'{"events":[']) * r.randint(900, 20_000),  # deep nesting
    lambda r: b'{"user_id": "1", "num_items": ' + b"9" * r.randint(4000, 6000) + b"}",  # huge integer
    lambda r: b'{"events": [' + b"1" * r.randint(4300, 6000) + b"]}",
    lambda r: r.choice([b"", b"null", b"{}", b"[]", b"\xff\xfe", b'{"user_id": NaN}', b'{"user_id": "1"'])
)


def _check(status: int, body: bytes, headers: dict, ok_status: int, where: str, seen: Counter) -> None:
    seen[status] += 1
    assert status == ok_status or status in CLIENT_ERRORS or status in (429, 503), (
        f"{where}: HTTP {status}: {body[:500]!r}"
    )
    if status == ok_status:
        json.loads(body)
        return
    doc = json.loads(body)
    err = doc.get("error") if isinstance(doc, dict) else None
    assert isinstance(err, dict) and err.get("code") and str(err.get("message", "")).strip(), (
        f"{where}: HTTP {status} without the error body: {body[:300]!r}"
    )
    if status in CLIENT_ERRORS:
        assert err["code"] == CLIENT_ERRORS[status], f"{where}: {doc}"


def _alive(gw: HttpProcess) -> None:
    assert gw.proc.poll() is None, f"gateway died: {gw.log_path.read_text(errors='replace')[-3000:]}"
    status, _, _ = http_post(gw.url + "/v1/recommendations", b'{"user_id": "1", "num_items": 2}')
    assert status == 200
    text = gw.log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[text.index("Traceback") - 500:][:4000]


# -- tests -------------------------------------------------------------------------------------------
def test_fuzzed_http_recommendations(fuzz_gateway: HttpProcess) -> None:
    url = fuzz_gateway.url + "/v1/recommendations"
    rss_before = tree_rss_kib(fuzz_gateway.proc.pid)
    seen: Counter[int] = Counter()
    for seed, r in bulk(N_RECOMMEND, "http-recommend"):
        TALLY["http-recommendations"] += 1
        if r.random() < 0.8:
            body, ctype = _dumps(_recommend_doc(r), r), "application/json"
        else:
            body, ctype = choose(r, RAW_BODIES), r.choice(["application/json", "text/plain", "application/x-www-form-urlencoded"])
        status, out, headers = http_post(url, body, ctype)
        _check(status, out, headers, 200, f"seed {seed} body {body[:200]!r}", seen)
    assert seen[200] > 0 and seen[400] > 0, seen
    _alive(fuzz_gateway)
    rss_after = tree_rss_kib(fuzz_gateway.proc.pid)
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB, f"gateway RSS {rss_before} -> {rss_after} KiB"
    print(f"http recommendations fuzz: {dict(seen)}; RSS {rss_before} -> {rss_after} KiB")


def test_fuzzed_http_events(fuzz_gateway: HttpProcess) -> None:
    url = fuzz_gateway.url + "/v1/events"
    seen: Counter[int] = Counter()
    for seed, r in bulk(N_EVENTS, "http-events"):
        TALLY["http-events"] += 1
        now = int(time.time() * 1000)
        body = _dumps(_events_doc(r, now), r) if r.random() < 0.85 else choose(r, RAW_BODIES)
        status, out, headers = http_post(url, body)
        _check(status, out, headers, 202, f"seed {seed} body {body[:200]!r}", seen)
    assert seen[202] > 0 and seen[400] > 0, seen
    _alive(fuzz_gateway)
    print(f"http events fuzz: {dict(seen)}")
