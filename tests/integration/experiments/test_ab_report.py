"""A/B analysis end to end: a real router process logs exposures to a real Tansu broker, simulated users
(seeded, treatment truly better) send user events, ``cascade experiments report --bootstrap`` joins
them by request_id."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import grpc
import pytest
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_pipelines.analysis import read_topic
from cascade_stream.producer import EventProducer
from cascade_stream.simulator import Template, stamp
from expstack import run_cli
from router_fixture_registry import build_registry
from router_procs import start_router

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
experiments:
  - name: ab-live
    salt: ab-live-1
    planned_exposures_per_variant: 150
    variants:
      - {name: control, traffic: 50}
      - {name: treatment, traffic: 50}
"""
TRUE_CTR = {"control": 0.10, "treatment": 0.35}


def test_report_from_kafka_shows_the_truly_better_variant(tmp_path: Path, broker):
    reg = build_registry(tmp_path / "artifacts")
    cfg = tmp_path / "experiments.yaml"
    cfg.write_text(CONFIG)
    router = start_router(tmp_path, reg.root, CASCADE_EXPERIMENTS_FILE=str(cfg),
                          CASCADE_EXPOSURES__BOOTSTRAP_SERVERS=broker.bootstrap)
    responses = {}
    try:
        with grpc.insecure_channel(router.target) as ch:
            stub = router_pb2_grpc.RecommendationServiceStub(ch)
            for u in range(400):
                rid = f"ab-live-{u}"
                responses[rid] = stub.Recommend(
                    router_pb2.RecommendRequest(user_id=f"shopper-{u}", num_items=5, request_id=rid), timeout=30)
            qa = stub.Recommend(router_pb2.RecommendRequest(
                user_id="qa", num_items=5, request_id="ab-live-qa", context={"cascade.force_variant": "treatment"}),
                timeout=30)
        deadline = time.monotonic() + 60
        while True:  # exposures are sent asynchronously
            exposures = [e for e in read_topic(broker.bootstrap, "exposures") if e.get("experiment") == "ab-live"]
            if len(exposures) >= 401 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        router.stop()
    assert len(exposures) == 401
    ex = next(e for e in exposures if e["request_id"] == "ab-live-0")
    resp = responses["ab-live-0"]
    assert ex["variant"] == resp.variant and ex["items"] == [i.item_id for i in resp.items]
    assert ex["positions"] == [1, 2, 3, 4, 5] and ex["user_id"] == "shopper-0" and ex["traffic"] == 50
    assert isinstance(ex["ts"], int) and ex["forced"] is False
    assert next(e for e in exposures if e["request_id"] == "ab-live-qa")["forced"] is True and qa.variant == "treatment"

    rng = random.Random(42)
    events = []
    for rid, resp in responses.items():
        uid = f"shopper-{rid.rsplit('-', 1)[1]}"
        item = resp.items[rng.randrange(len(resp.items))].item_id
        events.append(stamp(Template("impression", uid, item, rid)))
        if rng.random() < TRUE_CTR[resp.variant]:
            events.append(stamp(Template("click", uid, item, rid)))
            if rng.random() < 0.5:
                events.append(stamp(Template("add_to_cart", uid, item, rid)))
    events.append(stamp(Template("click", "qa", qa.items[0].item_id, "ab-live-qa")))  # forced: left out
    with EventProducer(broker.kafka_config(), topic="user-events") as producer:
        producer.send_all(events)

    r = run_cli("experiments", "report", "ab-live", "--bootstrap", broker.bootstrap, "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    by_name = {v["name"]: v for v in report["variants"]}
    assert sum(v["exposures"] for v in by_name.values()) == 400
    assert report["inputs"]["forced_left_out"] == 1
    assert by_name["treatment"]["rates"]["ctr"]["rate"] > by_name["control"]["rates"]["ctr"]["rate"]
    ctr = next(c for c in report["comparisons"] if c["metric"] == "ctr")
    assert ctr["treatment"] == "treatment" and ctr["control"] == "control"
    assert ctr["ci"][0] > 0 and ctr["verdict"] == "significant (better)"
    assert report["srm"]["mismatch"] is False
    human = run_cli("experiments", "report", "ab-live", "--bootstrap", broker.bootstrap, "--config", str(cfg))
    assert human.returncode == 0 and "significant (better)" in human.stdout and "SRM" in human.stdout
