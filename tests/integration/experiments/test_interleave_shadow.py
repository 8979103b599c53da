"""Interleaving and shadow ranking over the real stack: router -> retrieval -> features -> ranking (two
ranker versions loaded), exposures through a real Tansu broker, analysis through the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cascade.router.v1 import router_pb2, router_pb2_grpc
from cascade_pipelines.analysis import read_topic
from cascade_platform.procs import ServiceProcess, free_port
from cascade_stream.producer import EventProducer
from cascade_stream.simulator import Template, stamp
from expstack import GENEROUS, VERSION_A, VERSION_B, Scorer, Services, run_cli, sample
from router_procs import scrape, start_router

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPERIMENT = "rankers-il"
CONFIG = f"""
experiments:
  - name: {EXPERIMENT}
    type: interleave
    salt: il-salt
    planned_exposures_per_variant: 30
    variants:
      - {{name: A, ranker_version: {VERSION_A}}}
      - {{name: B, ranker_version: {VERSION_B}}}
"""
SHADOW = f"shadow: {{ranker_version: {VERSION_B}, sample_percent: 100, timeout_s: 10}}\n"


@dataclass
class Router:
    proc: ServiceProcess
    metrics_port: int
    config: Path
    stub: router_pb2_grpc.RecommendationServiceStub

    def recommend(self, **kw) -> router_pb2.RecommendResponse:
        return self.stub.Recommend(router_pb2.RecommendRequest(**kw), timeout=60)

    def metric(self, name: str, **labels: str) -> float:
        return sample(scrape(self.metrics_port), name, **labels)

    def reload(self, text: str) -> None:
        """Write a new config and wait until the router applied it (polls its reload counter)."""
        before = self.metric("cascade_experiments_reloads_total", outcome="applied")
        self.config.write_text(text)
        deadline = time.monotonic() + 60
        while self.metric("cascade_experiments_reloads_total", outcome="applied") <= before:
            assert time.monotonic() < deadline, "router did not apply the new experiment config"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def router(tmp_path_factory, services: Services, broker) -> Iterator[Router]:
    tmp = tmp_path_factory.mktemp("il_router")
    cfg = tmp / "experiments.yaml"
    cfg.write_text(CONFIG + SHADOW)
    port = free_port()
    proc = start_router(
        tmp, services.registry.root, targets=services.targets(),
        CASCADE_EXPERIMENTS_FILE=str(cfg), CASCADE_EXPERIMENTS_POLL_S="0.2",
        CASCADE_EXPOSURES__BOOTSTRAP_SERVERS=broker.bootstrap, CASCADE_METRICS_PORT=str(port), **GENEROUS,
    )
    try:
        with grpc.insecure_channel(proc.target) as ch:
            yield Router(proc, port, cfg, router_pb2_grpc.RecommendationServiceStub(ch))
    finally:
        proc.stop()


def _exposures(broker, request_ids: set[str]) -> dict[str, dict]:
    """Read the exposures topic until every given request has its exposure (sent asynchronously)."""
    deadline = time.monotonic() + 60
    while True:
        found = {e["request_id"]: e for e in read_topic(broker.bootstrap, "exposures") if e["request_id"] in request_ids}
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_interleaved_list_records_the_contributing_ranker(router: Router, services: Services, broker):
    resp = router.recommend(user_id="u3", num_items=8, request_id="il-one")
    assert resp.variant == "interleave" and not resp.degraded
    assert resp.model_version == f"interleave({VERSION_A},{VERSION_B})"
    items = [i.item_id for i in resp.items]
    assert len(items) == 8 == len(set(items))
    ex = _exposures(broker, {"il-one"})["il-one"]
    assert ex["experiment"] == EXPERIMENT and ex["kind"] == "interleave" and ex["user_id"] == "u3"
    assert ex["items"] == items and ex["positions"] == list(range(1, 9))
    assert ex["arms"] == {"A": VERSION_A, "B": VERSION_B}
    teams = ex["teams"]
    assert set(teams) <= {"A", "B"} and abs(teams.count("A") - teams.count("B")) <= 1
    # each ranker's picks appear in its own score order (team draft), scored offline from the registry
    scorer = Scorer(services.registry)
    sources = [i.source for i in resp.items]
    for team, version in (("A", VERSION_A), ("B", VERSION_B)):
        scores = scorer.scores(version, "u3", items, sources)
        picked = [scores[k] for k, t in enumerate(teams) if t == team]
        assert picked == sorted(picked, reverse=True), (team, picked)
        # the response's score of an item is the contributing ranker's score
        for k, t in enumerate(teams):
            if t == team:
                assert resp.items[k].score == pytest.approx(float(scores[k]), rel=1e-4, abs=1e-4)


def test_interleaving_attributes_clicks_to_the_contributing_ranker(router: Router, services: Services, broker):
    """Ground truth: users click the shown item ranker B scores highest, so B must win the attribution."""
    scorer = Scorer(services.registry)
    rids: dict[str, router_pb2.RecommendResponse] = {}
    users = [f"u{i}" for i in range(10)]
    for n in range(40):
        uid = users[n % len(users)]
        rid = f"il-attr-{n}"
        rids[rid] = router.recommend(user_id=uid, num_items=6, request_id=rid)
    exposures = _exposures(broker, set(rids))
    assert len(exposures) == len(rids)
    clicks = []
    expected = {"A": 0, "B": 0}
    for rid, resp in rids.items():
        ex = exposures[rid]
        items, sources = ex["items"], ex["sources"]
        b_scores = scorer.scores(VERSION_B, ex["user_id"], items, sources)
        k = int(b_scores.argmax())
        clicks.append(stamp(Template("click", ex["user_id"], items[k], rid)))
        expected[ex["teams"][k]] += 1
    with EventProducer(broker.kafka_config(), topic="user-events") as producer:
        producer.send_all(clicks)
    r = run_cli("experiments", "report", EXPERIMENT, "--bootstrap", broker.bootstrap, "--json",
                "--config", str(router.config))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["kind"] == "interleave"
    assert report["clicks_credited"] == expected  # each click credited to the team of the clicked item
    assert report["wins"]["B"] == expected["B"] and report["wins"]["A"] == expected["A"]
    assert report["wins"]["B"] > report["wins"]["A"]
    assert report["p_value"] < 0.05 and report["horizon_reached"]
    assert report["verdict"] == "significant: B preferred"


def test_shadow_scores_after_the_response_and_never_changes_it(router: Router):
    before = router.metric("cascade_shadow_requests_total", version=VERSION_B, outcome="scored")
    with_shadow = [router.recommend(user_id=f"u{i}", num_items=5, request_id=f"shadow-{i}") for i in range(5)]
    deadline = time.monotonic() + 60
    while router.metric("cascade_shadow_requests_total", version=VERSION_B, outcome="scored") < before + 5:
        assert time.monotonic() < deadline, "shadow ranking never scored"
        time.sleep(0.1)
    text = scrape(router.metrics_port)
    assert sample(text, "cascade_shadow_overlap_at_10_count", version=VERSION_B) >= 5
    assert sample(text, "cascade_shadow_kendall_tau_count", version=VERSION_B) >= 5
    assert sample(text, "cascade_shadow_spearman_count", version=VERSION_B) >= 5
    assert sample(text, "cascade_shadow_seconds_count", version=VERSION_B) >= 5

    try:
        router.reload(CONFIG)  # shadow off: the same requests must get the same answers
        without = [router.recommend(user_id=f"u{i}", num_items=5, request_id=f"shadow-{i}") for i in range(5)]
        assert without == with_shadow
        # a broken shadow (a version ranking does not serve) fails on the side, never in the answer
        router.reload(CONFIG + "shadow: {ranker_version: v-missing, timeout_s: 10}\n")
        broken = [router.recommend(user_id=f"u{i}", num_items=5, request_id=f"shadow-{i}") for i in range(5)]
        assert broken == with_shadow
        deadline = time.monotonic() + 60
        while router.metric("cascade_shadow_requests_total", version="v-missing", outcome="failed") < 5:
            assert time.monotonic() < deadline, "failed shadow calls were not counted"
            time.sleep(0.1)
    finally:
        router.reload(CONFIG + SHADOW)
