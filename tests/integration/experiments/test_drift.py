"""The drift loop with real components: the stream simulator's synthetic users send events through a
real Tansu broker; ``python -m cascade_pipelines.drift`` reads them, compares them with the served
version's reference distributions and writes a retrain request only when behaviour shifted. The gated
retrain trains a real (tiny) candidate and promotes it only when it beats the current version."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cascade_core.registry import Registry
from cascade_pipelines import drift
from cascade_stream.broker import create_topics
from cascade_stream.producer import EventProducer
from cascade_stream.simulator import Template, run, stamp, synthetic
from router_fixture_registry import N_USERS, build_registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _as_registry_users(templates: Iterator[Template]) -> Iterator[Template]:
    """The simulator numbers users 1..N; the registry calls them u0..u{N-1}."""
    for t in templates:
        yield Template(t.event_type, f"u{int(t.user_id) - 1}", t.item_id, t.request_id)


def _catalog(reg: Registry) -> dict[str, str]:
    vd = drift.VersionData(reg, "latest")
    return dict(zip(vd.item_ids, (str(c) for c in vd.item_category)))


def _drift_cli(reg: Registry, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cascade_pipelines.drift", "--artifacts", str(reg.root), *args],
                          capture_output=True, text=True, timeout=600, env=os.environ.copy())


def _prom(path: Path) -> dict[str, float]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[Registry, list[Template]]:
    """A version whose reference distributions come from simulated traffic (its 'training window'),
    and the same simulation's next 5,000 events: a later window of unchanged behaviour."""
    reg = build_registry(tmp_path_factory.mktemp("drift") / "artifacts", full=True)
    traffic = _as_registry_users(synthetic(_catalog(reg), N_USERS, seed=1))
    baseline = [stamp(t) for t in itertools.islice(traffic, 6000)]
    vd = drift.VersionData(reg, "latest")
    drift._write_json(drift.reference_path(reg, vd.version), drift.build_reference(vd, baseline))
    return reg, list(itertools.islice(traffic, 5000))


def test_unshifted_traffic_raises_no_request_and_shifted_traffic_does(served, broker):
    reg, later = served
    catalog = _catalog(reg)
    create_topics(broker.kafka_config(), ["drift-same", "drift-shifted"], partitions=1)
    action_only = {i: c for i, c in catalog.items() if c == "action"}  # users now engage with one category
    with EventProducer(broker.kafka_config(), topic="drift-same") as producer:
        run(producer, iter(later), rate=None, count=len(later))
        run(producer, _as_registry_users(synthetic(action_only, N_USERS, seed=1)), rate=None, count=5000,
            topic="drift-shifted")
    metrics_file = reg.root / "drift.prom"

    same = _drift_cli(reg, "--bootstrap", broker.bootstrap, "--topic", "drift-same", "--metrics-file",
                      str(metrics_file))
    assert same.returncode == 0, same.stderr
    assert "detected False" in same.stdout
    assert drift.pending_requests(reg.root) == []
    prom = _prom(metrics_file)
    assert prom['cascade_drift_detected{version="v-fixture"}'] == 0
    assert prom['cascade_drift_max_psi{version="v-fixture"}'] < 0.1
    assert prom['cascade_drift_events{version="v-fixture"}'] >= 1000
    report = json.loads((reg.root / "drift" / "v-fixture" / "drift_report.json").read_text())
    assert {f["feature"] for f in report["features"]} >= {"item_category", "ranker_score", "item_log_popularity"}

    shifted = _drift_cli(reg, "--bootstrap", broker.bootstrap, "--topic", "drift-shifted", "--metrics-file",
                         str(metrics_file))
    assert shifted.returncode == 0, shifted.stderr
    assert "detected True" in shifted.stdout
    (request,) = drift.pending_requests(reg.root)
    doc = json.loads(request.read_text())
    assert doc["status"] == "pending" and doc["version"] == "v-fixture"
    drifted = {f["feature"]: f for f in doc["features"]}
    assert drifted["item_category"]["psi"] >= 0.2
    prom = _prom(metrics_file)
    assert prom['cascade_drift_detected{version="v-fixture"}'] == 1
    assert prom['cascade_drift_psi{version="v-fixture",feature="item_category"}'] >= 0.2
    assert prom["cascade_retrain_requests_pending"] == 1
    # a second drifting run does not pile up requests for the same version
    again = _drift_cli(reg, "--bootstrap", broker.bootstrap, "--topic", "drift-shifted")
    assert again.returncode == 0 and len(drift.pending_requests(reg.root)) == 1


def test_reference_is_computed_from_the_version_when_missing(tmp_path: Path):
    reg = build_registry(tmp_path / "artifacts", full=True)
    path = drift.reference_path(reg, "v-fixture")
    assert not path.exists()
    ref = drift.ensure_reference(reg, "v-fixture")
    assert path.is_file() and json.loads(path.read_text()) == ref
    feats = ref["features"]
    assert set(feats) >= {"user_log_interactions", "item_log_popularity", "item_cat:action", "item_category",
                          "ranker_score"}
    for f in feats.values():
        assert sum(f["props"]) == pytest.approx(1.0)
    # the reference score distribution is the ranker's own output on those pairs
    vd = drift.VersionData(reg, "v-fixture")
    users, items = drift.reference_pairs_from_version(vd, n=5000, seed=0)
    scores = vd.pair_features(users, items)[0]["ranker_score"]
    assert feats["ranker_score"]["mean"] == pytest.approx(float(scores.mean()), rel=1e-6)


TINY = ("--dataset", "synthetic", "--synthetic-users", "300", "--synthetic-items", "300", "--epochs", "1",
        "--ranker-epochs", "2")


def _set_metric(reg: Registry, version: str, value: float) -> None:
    m = reg.manifest(version)
    reg.write_manifest(m.model_copy(update={"metrics": {**m.metrics, "pipeline": {"ndcg@10": value}}}))


def test_gated_retrain_promotes_only_a_better_candidate(tmp_path: Path):
    reg = build_registry(tmp_path / "artifacts", full=True)
    result = drift.DriftResult("v-fixture", 500, 0, [drift.FeatureDrift("item_category", "categorical", 0.9,
                                                                        None, None, True)], True, True)
    # current version is (claimed) excellent: the candidate is registered but LATEST stays
    _set_metric(reg, "v-fixture", 0.99)
    drift.write_request(reg.root, result, 0.2)
    out = _drift_cli(reg, "--retrain", *TINY)
    assert out.returncode == 0, out.stderr
    assert "kept_for_review" in out.stdout
    candidates = [v for v in reg.versions() if v != "v-fixture"]
    assert len(candidates) == 1 and reg.latest() == "v-fixture"
    assert drift.reference_path(reg, candidates[0]).is_file()
    (done,) = (reg.root / "retrain_requests" / "done").glob("*.json")
    assert json.loads(done.read_text())["result"]["outcome"] == "kept_for_review"
    assert drift.pending_requests(reg.root) == []

    # without a pending request nothing is trained
    idle = _drift_cli(reg, "--retrain", *TINY)
    assert idle.returncode == 0 and "no pending retrain request" in idle.stdout
    assert len(reg.versions()) == 2

    # current version is (claimed) useless: the next candidate is promoted
    _set_metric(reg, "v-fixture", 0.0)
    drift.write_request(reg.root, result, 0.2)
    out = _drift_cli(reg, "--retrain", *TINY)
    assert out.returncode == 0, out.stderr
    assert "promoted" in out.stdout
    new = set(reg.versions()) - {"v-fixture", candidates[0]}
    assert len(new) == 1 and reg.latest() == new.pop()
