"""Online attribution over a real Tansu broker and the real process (python -m cascade_stream.attribution).

Exposures are produced by the router's own ExposureLogger, user events by the SDK (EventProducer);
the test scrapes the process's /metrics until every attribution series equals the value computed
from what was produced -- exactly, including duplicates (re-sent event ids), clicks produced before
their exposure, clicks on items not shown, unknown request ids and QA-forced exposures. Then it
restarts the process (same consumer group) and checks that clicks on lists shown before the restart
are still attributed (exposures re-read without re-counting impressions).
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from cascade_platform.procs import ServiceProcess, free_port
from cascade_router.exposures import ExposureLogger, exposure_event
from cascade_stream.broker import create_topics
from cascade_stream.producer import EventProducer
from prometheus_client.parser import text_string_to_metric_families

DEADLINE_S = 180.0  # generous: the machine is shared


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
    except OSError:
        return {}
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            ours = s.name.startswith(("cascade_recommend_", "cascade_attribution_"))
            if ours and not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


def lab(variant: str, version: str) -> dict[str, str]:
    return {"experiment": "ranker-ab", "variant": variant, "model_version": version}


class Attribution:
    def __init__(self, bootstrap: str, prefix: str, log: Path) -> None:
        self.metrics_port = free_port()
        self.proc = ServiceProcess(
            "attribution", "cascade_stream.attribution", free_port(),
            env={
                "CASCADE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                "CASCADE_EXPOSURES_TOPIC": f"{prefix}.exposures",
                "CASCADE_TOPICS__EVENTS": f"{prefix}.user-events",
                "CASCADE_GROUP_ID": f"{prefix}.attribution",
                "CASCADE_AUTO_OFFSET_RESET": "earliest",
                "CASCADE_CREATE_TOPICS": "false",
                "CASCADE_PENDING_GRACE_S": "4",
                "CASCADE_COMMIT_INTERVAL_S": "0.5",
                "CASCADE_METRICS_PORT": str(self.metrics_port),
                "CASCADE_HOST": "127.0.0.1",
                "CASCADE_LOG_JSON": "false",
            },
            log_path=log,
        )

    def start(self) -> "Attribution":
        self.proc.start()
        return self

    def log(self) -> str:
        p = self.proc.log_path
        return p.read_text(errors="replace")[-4000:] if p and p.exists() else ""

    def wait_for(self, want: dict, what: str) -> dict:
        """Poll /metrics until every series in ``want`` has exactly its value and nothing is pending."""
        deadline = time.monotonic() + DEADLINE_S
        got: dict = {}
        while time.monotonic() < deadline:
            assert self.proc.proc is not None and self.proc.proc.poll() is None, self.log()
            got = scrape(self.metrics_port)
            pending = got.get(key("cascade_attribution_pending_events"), -1)
            if pending == 0 and all(got.get(k, 0.0) == v for k, v in want.items()):
                return got
            time.sleep(0.5)
        diff = {k: (got.get(k, 0.0), v) for k, v in want.items() if got.get(k, 0.0) != v}
        pytest.fail(f"{what}: (got, want) differ after {DEADLINE_S}s: {diff}\n{self.log()}")


def click(rid: str | None, item: str, kind: str = "click", user: str = "7") -> dict:
    ev: dict[str, Any] = {
        "event_id": str(uuid.uuid4()), "event_type": kind, "user_id": user,
        "item_id": item, "timestamp": int(time.time() * 1000),
    }
    if rid is not None:
        ev["request_id"] = rid
    return ev


def send_exposures(bootstrap: str, topic: str, exposures: list[dict]) -> None:
    logger = ExposureLogger(bootstrap, topic)
    logger.start()
    for e in exposures:
        assert logger.offer(e)
    logger.close(timeout_s=20)  # flushes: every queued exposure is sent before it returns


def exp(rid: str, variant: str, version: str, user: str, items: list[str], forced: bool = False) -> dict:
    return exposure_event(
        request_id=rid, user_id=user, experiment="ranker-ab", variant=variant, kind="ab", forced=forced,
        traffic=50.0, model_version=version, degraded=False, items=items, sources=["ann"] * len(items),
    )


def test_attribution_counts_match_what_was_produced(broker, tmp_path):
    prefix = f"at_{uuid.uuid4().hex[:8]}"
    ex_topic, ev_topic = f"{prefix}.exposures", f"{prefix}.user-events"
    create_topics(broker.kafka_config(), [ex_topic, ev_topic], partitions=3)
    kafka = broker.kafka_config()
    items = [str(i) for i in range(100, 105)]

    # 10 lists by the control arm (v1), 10 by the treatment arm (v2), one QA-forced list
    control = [exp(f"c{i}", "control", "v1", str(i), items) for i in range(10)]
    treatment = [exp(f"t{i}", "treatment", "v2", str(20 + i), items) for i in range(10)]
    forced = exp("qa0", "treatment", "v2", "99", items, forced=True)

    proc = Attribution(broker.bootstrap, prefix, tmp_path / "attribution.log").start()
    try:
        with EventProducer(kafka, topic=ev_topic) as producer:
            # clicks produced BEFORE their exposures (exposures are logged asynchronously)
            early = [click("t0", "100", user="20"), click("t1", "101", user="21")]
            producer.send_all(early)
            send_exposures(broker.bootstrap, ex_topic, control + treatment + [forced])
            dup = click("c0", "100", user="0")
            events = [
                dup, dict(dup),                                   # a re-send: same event_id, counted once
                click("c1", "102", user="1"), click("c2", "104", user="2"),
                click("c3", "999", user="3"),                     # item not shown
                click("t2", "100", user="22"), click("t3", "101", user="23"), click("t4", "102", user="24"),
                click("t5", "103", user="25"), click("t5", "103", user="25"),  # repeat: same item, same list
                click("t6", "104", "add_to_cart", user="26"), click("t7", "100", "add_to_cart", user="27"),
                click("t6", "104", "purchase", user="26"),
                click("c4", "100", "view", user="4"),            # views are not attributed
                click("ghost", "100", user="5"),                  # unknown request id
                click(None, "100", user="6"),                     # no request id
                click("qa0", "100", user="99"),                   # QA-forced list: left out
            ]
            producer.send_all(events)

        want = {
            key("cascade_recommend_impressions_total", **lab("control", "v1")): 10,
            key("cascade_recommend_impressions_total", **lab("treatment", "v2")): 10,
            key("cascade_recommend_clicks_total", **lab("control", "v1")): 3,
            key("cascade_recommend_clicks_total", **lab("treatment", "v2")): 6,
            key("cascade_recommend_add_to_carts_total", **lab("treatment", "v2")): 2,
            key("cascade_recommend_purchases_total", **lab("treatment", "v2")): 1,
            key("cascade_recommend_unattributed_clicks_total", reason="item_not_shown"): 1,
            key("cascade_recommend_unattributed_clicks_total", reason="unknown_request"): 1,
            key("cascade_recommend_unattributed_clicks_total", reason="no_request_id"): 1,
            key("cascade_attribution_events_total", event_type="click", outcome="duplicate"): 1,
            key("cascade_attribution_events_total", event_type="click", outcome="repeat"): 1,
            key("cascade_attribution_events_total", event_type="click", outcome="forced"): 1,
            key("cascade_attribution_events_total", event_type="view", outcome="ignored"): 1,
            key("cascade_attribution_exposures_total", outcome="counted"): 20,
            key("cascade_attribution_exposures_total", outcome="forced"): 1,
        }
        got = proc.wait_for(want, "first run")
        # nothing else was counted: every attribution counter series is one of the expected ones
        extra = {k: v for k, v in got.items()
                 if k[0].endswith("_total") and v and k not in want
                 and k[0] != "cascade_attribution_events_total"}
        assert extra == {}, extra
        attributed = got[key("cascade_attribution_events_total", event_type="click", outcome="attributed")]
        assert attributed == 9

        # restart (same group): lists shown before the restart still attribute, impressions not re-counted
        assert proc.proc.stop() == 0, proc.log()
        proc2 = Attribution(broker.bootstrap, prefix, tmp_path / "attribution2.log")
        proc2.proc.env["CASCADE_GROUP_ID"] = f"{prefix}.attribution"
        proc2.start()
        try:
            with EventProducer(kafka, topic=ev_topic) as producer:
                producer.send_all([click("c5", "101", user="5"), click("t8", "103", user="28")])
            after = proc2.wait_for({
                key("cascade_recommend_clicks_total", **lab("control", "v1")): 1,
                key("cascade_recommend_clicks_total", **lab("treatment", "v2")): 1,
            }, "after restart")
            assert after.get(key("cascade_recommend_impressions_total", **lab("control", "v1")), 0) == 0
            assert after.get(key("cascade_attribution_exposures_total", outcome="replayed"), 0) >= 20
            assert not after.get(key("cascade_recommend_unattributed_clicks_total", reason="unknown_request"))
        finally:
            proc2.proc.stop()
    finally:
        proc.proc.stop()
