"""Sticky, salted, traffic-weighted assignment; holdout; forced variants; interleave; config validation."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
from cascade_core.errors import InvalidArgumentError
from cascade_router.experiments import (
    FORCE_VARIANT_KEY,
    Assigner,
    ExperimentConfigError,
    ExperimentsConfig,
    Variant,
    bucket,
    load_experiments,
    parse_experiments_text,
)


def _config(*splits: tuple[str, float], salt: str = "exp-1") -> ExperimentsConfig:
    return ExperimentsConfig.single(
        "exp", salt, tuple(Variant(name=n, ranker_version="", traffic=t) for n, t in splits)
    )


def test_bucket_is_sha256_of_salt_and_user() -> None:
    digest = hashlib.sha256(b"exp-1:user-9").digest()
    assert bucket("exp-1", "user-9") == int.from_bytes(digest[:8], "big") % 10_000
    assert all(0 <= bucket("s", str(i)) < 10_000 for i in range(2000))


def test_assignment_is_sticky_across_assigners() -> None:
    a, b = (
        Assigner(_config(("control", 50), ("treatment", 50))),
        Assigner(_config(("control", 50), ("treatment", 50))),
    )
    for uid in map(str, range(5000)):
        assert a.assign(uid).name == b.assign(uid).name == a.assign(uid).name


@pytest.mark.parametrize("splits", [(("control", 50), ("treatment", 50)), (("a", 10), ("b", 30), ("c", 60))])
def test_split_within_one_point_over_100k_users(splits) -> None:
    assigner = Assigner(_config(*splits))
    n = 100_000
    counts = Counter(assigner.assign(f"user-{i}").name for i in range(n))
    for name, pct in splits:
        assert abs(100 * counts[name] / n - pct) < 1.0, (name, counts)


def test_holdout_and_two_exclusive_experiments_within_one_point_over_100k_users() -> None:
    cfg = parse_experiments_text(
        "holdout: {percent: 10, salt: h}\n"
        "experiments:\n"
        "  - name: e1\n    traffic: 30\n    variants: [{name: a, traffic: 50}, {name: b, traffic: 50}]\n"
        "  - name: e2\n    traffic: 50\n    variants: [{name: c, traffic: 20}, {name: d, traffic: 80}]\n"
    )
    assigner = Assigner(cfg)
    n = 100_000
    counts = Counter()
    for i in range(n):
        a = assigner.assign(f"user-{i}")
        counts[(a.experiment, a.name)] += 1
    # holdout 10 % of everyone; experiments share the other 90 % (30 % / 50 % / 20 % unassigned)
    expected = {
        ("", "holdout"): 10.0,
        ("e1", "a"): 90 * 0.3 * 0.5,
        ("e1", "b"): 90 * 0.3 * 0.5,
        ("e2", "c"): 90 * 0.5 * 0.2,
        ("e2", "d"): 90 * 0.5 * 0.8,
        ("", "default"): 90 * 0.2,
    }
    assert set(counts) == set(expected)
    for key, pct in expected.items():
        assert abs(100 * counts[key] / n - pct) < 1.0, (key, counts[key])


def test_holdout_users_never_enter_an_experiment() -> None:
    cfg = parse_experiments_text(
        "holdout: {percent: 20, salt: h, ranker_version: v-old}\n"
        "experiments:\n  - name: e\n    variants: [{name: a, traffic: 100}]\n"
    )
    assigner = Assigner(cfg)
    for i in range(3000):
        uid = f"u{i}"
        a = assigner.assign(uid)
        in_holdout = bucket("h", uid) < 2000
        assert (a.kind == "holdout") == in_holdout
        if in_holdout:
            assert (a.experiment, a.name, a.ranker_version) == ("", "holdout", "v-old")
        else:
            assert (a.experiment, a.name) == ("e", "a")


def test_salt_reshuffles_users() -> None:
    a = Assigner(_config(("control", 50), ("treatment", 50), salt="one"))
    b = Assigner(_config(("control", 50), ("treatment", 50), salt="two"))
    differ = sum(a.assign(str(i)).name != b.assign(str(i)).name for i in range(2000))
    assert 800 < differ < 1200  # independent hashes: about half the users move


def test_zero_traffic_variant_never_assigned_and_default_is_control() -> None:
    assigner = Assigner(_config(("control", 100), ("off", 0)))
    assert {assigner.assign(str(i)).name for i in range(3000)} == {"control"}
    default = ExperimentsConfig.default()
    exp = default.experiments[0]
    assert [(v.name, v.ranker_version, v.traffic) for v in exp.variants] == [("control", "", 100)]
    assert Assigner(default).assign("anyone").name == "control"
    assert Assigner(default).assign("anyone").experiment == "default"


def test_forced_variant_from_context_and_config() -> None:
    cfg = parse_experiments_text(
        "experiments:\n"
        "  - name: e1\n    variants: [{name: a, traffic: 100}, {name: b, traffic: 0}]\n"
        "forced_users: {qa-1: e1/b}\n"
    )
    assigner = Assigner(cfg)
    assert assigner.assign("anyone").name == "a"
    forced = assigner.assign("anyone", {FORCE_VARIANT_KEY: "e1/b"})
    assert (forced.experiment, forced.name, forced.forced) == ("e1", "b", True)
    assert assigner.assign("anyone", {FORCE_VARIANT_KEY: "b"}).name == "b"  # unique variant name
    assert assigner.assign("qa-1").name == "b" and assigner.assign("qa-1").forced
    assert assigner.assign("anyone", {FORCE_VARIANT_KEY: "holdout"}).kind == "holdout"
    assert assigner.assign("anyone", {FORCE_VARIANT_KEY: "default"}).name == "default"
    with pytest.raises(InvalidArgumentError, match="cascade.force_variant: unknown variant 'zzz'"):
        assigner.assign("anyone", {FORCE_VARIANT_KEY: "zzz"})


def test_forced_variants_can_be_disabled() -> None:
    cfg = parse_experiments_text(
        "allow_forced_variants: false\nexperiments:\n  - name: e\n    variants: [{name: a, traffic: 100}]\n"
    )
    with pytest.raises(InvalidArgumentError, match="disabled"):
        Assigner(cfg).assign("u", {FORCE_VARIANT_KEY: "e/a"})


def test_interleave_experiment_assigns_both_arms() -> None:
    cfg = parse_experiments_text(
        "experiments:\n  - name: il\n    type: interleave\n"
        "    variants: [{name: A, ranker_version: v1}, {name: B, ranker_version: v2}]\n"
    )
    a = Assigner(cfg).assign("u1")
    assert (a.kind, a.experiment, a.name) == ("interleave", "il", "interleave")
    assert a.arms is not None and [(v.name, v.ranker_version) for v in a.arms] == [("A", "v1"), ("B", "v2")]
    solo = Assigner(cfg).assign("u1", {FORCE_VARIANT_KEY: "il/B"})  # QA: one arm's plain list
    assert (solo.kind, solo.name, solo.ranker_version, solo.arms) == ("ab", "B", "v2", None)


def test_load_legacy_yaml(tmp_path: Path) -> None:
    p = tmp_path / "exp.yaml"
    p.write_text(
        "name: ranker-v2\nvariants:\n"
        "  - {name: control, traffic: 90}\n"
        "  - {name: treatment, ranker_version: v2, traffic: 10}\n"
    )
    cfg = load_experiments(p)
    (exp,) = cfg.experiments
    assert exp.effective_salt == "ranker-v2"
    assert [(v.name, v.ranker_version, v.traffic) for v in exp.variants] == [
        ("control", "", 90),
        ("treatment", "v2", 10),
    ]


def test_demo_file_is_valid() -> None:
    demo = Path(__file__).resolve().parents[3] / "docs" / "examples" / "experiments.yaml"
    cfg = load_experiments(demo)
    (exp,) = [e for e in cfg.experiments if e.type == "ab"]
    assert [v.traffic for v in exp.variants] == [50, 50]
    # Starts with a single trained version: every ranker is the ranking default or "latest".
    assert all(v.ranker_version in ("", "latest") for e in cfg.experiments for v in e.variants)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "variants:\n  - {name: a, traffic: 60}\n  - {name: b, traffic: 30}\n",
            "variants: traffic must sum to 100, got 90",
        ),
        (
            "variants:\n  - {name: a, traffic: 50}\n  - {name: a, traffic: 50}\n",
            "duplicate variant names ['a']",
        ),
        ("variants:\n  - {name: a, traffic: 150}\n", "variants.0.traffic"),
        ("variants:\n  - {name: 'bad name', traffic: 100}\n", "variants.0.name"),
        (
            "variants:\n  - {name: a, traffic: 100, ranker_version: '../x'}\n",
            "ranker_version '../x' is not a registry",
        ),
        ("variants:\n  - {name: a, trafic: 100}\n", "variants.0.trafic"),
        ("variants: []\n", "variants:"),
        ("- just a list\n", "expected a mapping with 'experiments'"),
        ("variants: [\n", "not valid YAML"),
        (
            "experiments:\n  - {name: e1, traffic: 70, variants: [{name: a, traffic: 100}]}\n"
            "  - {name: e2, traffic: 40, variants: [{name: a, traffic: 100}]}\n",
            "traffic of all experiments must be at most 100, got 110",
        ),
        (
            "experiments:\n  - {name: e, type: interleave, variants: [{name: a}]}\n",
            "exactly 2 arms",
        ),
        (
            "experiments:\n  - {name: e, variants: [{name: holdout, traffic: 100}]}\n",
            "reserved",
        ),
        (
            "experiments:\n  - {name: e, variants: [{name: a, traffic: 100}]}\nforced_users: {u: e/zz}\n",
            "forced_users.u: experiment 'e' has no variant 'zz'",
        ),
        ("holdout: {percent: 5.001}\n", "more than 2 decimals"),
        ("shadow: {sample_percent: 10}\n", "shadow.ranker_version"),
        ("experiments: []\nsurprise: 1\n", "surprise"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    with pytest.raises(ExperimentConfigError) as ei:
        load_experiments(p)
    assert str(ei.value).startswith(str(p))
    assert needle in str(ei.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExperimentConfigError, match="cannot read experiment file"):
        load_experiments(tmp_path / "nope.yaml")


def test_docs_reference_example_is_valid() -> None:
    import re

    doc = (Path(__file__).resolve().parents[3] / "docs" / "experiments.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert block is not None
    cfg = parse_experiments_text(block.group(1), "docs/experiments.md")
    assert [e.type for e in cfg.experiments] == ["ab", "interleave"] and cfg.shadow is not None
