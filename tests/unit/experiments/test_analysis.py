"""Experiment analysis on seeded simulated traffic with a known truth, and its statistics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cascade_pipelines import analysis
from simulation import ab_config, simulate_ab, simulate_interleave


# -- statistics against textbook values ---------------------------------------------------------
def test_chi2_sf_matches_tables() -> None:
    for x, df in ((3.841459, 1), (5.991465, 2), (11.070498, 5), (18.307038, 10)):
        assert analysis.chi2_sf(x, df) == pytest.approx(0.05, abs=1e-5)
    assert analysis.chi2_sf(10.827566, 1) == pytest.approx(0.001, abs=1e-6)
    assert analysis.chi2_sf(0.0, 3) == 1.0


def test_wilson_and_newcombe_known_values() -> None:
    lo, hi = analysis.wilson(10, 100)
    assert (lo, hi) == (pytest.approx(0.0552, abs=1e-4), pytest.approx(0.1744, abs=1e-4))
    # Newcombe (1998) example: 56/70 vs 48/80 -> difference 0.2 with [0.0524, 0.3339] (p1 - p2)
    d, lo, hi = analysis.newcombe_diff(48, 80, 56, 70)
    assert d == pytest.approx(0.2)
    assert (lo, hi) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))


def test_binomial_and_ks() -> None:
    assert analysis.binom_two_sided(2, 10) == pytest.approx(0.109375)
    assert analysis.binom_two_sided(5, 10) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(2000), rng.standard_normal(2000)
    d, p = analysis.ks_2samp(a, b)
    assert d < 0.06 and p > 0.01
    d, p = analysis.ks_2samp(a, b + 0.5)
    assert d > 0.15 and p < 1e-10


# -- A/B on simulated traffic ---------------------------------------------------------------------
def test_truly_better_treatment_is_detected_once_the_horizon_is_reached() -> None:
    traffic = simulate_ab({"control": 0.10, "treatment": 0.13}, seed=1)
    report = analysis.analyze_ab("sim-exp", traffic.exposures, traffic.events, planned_per_variant=2500)
    ctr = report.comparison("ctr", "treatment")
    assert report.horizon_reached
    assert report.variant("treatment").rates["ctr"].rate > report.variant("control").rates["ctr"].rate
    assert ctr.ci[0] > 0, ctr  # the interval excludes zero
    assert ctr.verdict == "significant (better)"
    assert abs(ctr.diff - 0.03) < 0.015  # close to the simulated truth
    assert not report.srm.mismatch and report.srm.p_value > 0.001
    assert report.inputs["exposures"] == 6000
    assert report.inputs["events_joined"] > 0


def test_peeking_guard_withholds_the_verdict_before_the_horizon() -> None:
    traffic = simulate_ab({"control": 0.10, "treatment": 0.13}, seed=1)
    report = analysis.analyze_ab("sim-exp", traffic.exposures, traffic.events, planned_per_variant=10_000)
    ctr = report.comparison("ctr", "treatment")
    assert ctr.ci[0] > 0  # the interim interval would look significant...
    assert not report.horizon_reached
    assert ctr.verdict.startswith("not significant yet (")  # ...but no verdict is given
    unplanned = analysis.analyze_ab("sim-exp", traffic.exposures, traffic.events)
    assert unplanned.comparison("ctr", "treatment").verdict.startswith("underpowered")


def test_no_true_difference_is_not_significant() -> None:
    traffic = simulate_ab({"control": 0.10, "treatment": 0.10}, seed=2)
    report = analysis.analyze_ab("sim-exp", traffic.exposures, traffic.events, planned_per_variant=2500)
    ctr = report.comparison("ctr", "treatment")
    assert ctr.ci[0] < 0 < ctr.ci[1]
    assert ctr.verdict == "no significant difference"


def test_broken_allocation_raises_a_sample_ratio_mismatch_warning() -> None:
    # users actually split 56/44 while every exposure declares the configured 50/50
    traffic = simulate_ab(
        {"control": 0.10, "treatment": 0.10}, seed=3,
        assign_with=ab_config((56, 44)), declared=ab_config((50, 50)),
    )
    report = analysis.analyze_ab("sim-exp", traffic.exposures, traffic.events, planned_per_variant=1000)
    assert report.srm.mismatch and report.srm.p_value < 0.001
    assert any("SAMPLE RATIO MISMATCH" in w for w in report.warnings)
    assert all("invalid: sample ratio mismatch" in c.verdict for c in report.comparisons)
    assert "MISMATCH" in analysis.render(report)


def test_lost_exposures_of_one_variant_raise_srm() -> None:
    traffic = simulate_ab({"control": 0.10, "treatment": 0.10}, seed=4, requests_per_user=1)
    # a logging bug drops every third treatment exposure
    kept = [ex for i, ex in enumerate(traffic.exposures) if not (ex["variant"] == "treatment" and i % 3 == 0)]
    report = analysis.analyze_ab("sim-exp", kept, traffic.events)
    assert report.srm.mismatch


def test_forced_and_duplicate_exposures_are_left_out() -> None:
    traffic = simulate_ab({"control": 0.2, "treatment": 0.2}, seed=5, n_users=200)
    forced = dict(traffic.exposures[0], request_id="qa-1", forced=True)
    dup = dict(traffic.exposures[1])
    report = analysis.analyze_ab("sim-exp", [*traffic.exposures, forced, dup], traffic.events)
    assert report.inputs["forced_left_out"] == 1
    assert report.inputs["duplicate_requests_left_out"] == 1
    assert report.inputs["exposures"] == 400


def test_cli_report_from_jsonl_files(tmp_path, capsys) -> None:
    from cascade_cli.main import main

    traffic = simulate_ab({"control": 0.10, "treatment": 0.13}, seed=1)
    ex, ev = tmp_path / "exposures.jsonl", tmp_path / "events.jsonl"
    ex.write_text("".join(analysis.iter_lines(traffic.exposures)))
    ev.write_text("".join(analysis.iter_lines(traffic.events)))
    assert main(["experiments", "report", "sim-exp", "--exposures", str(ex), "--events", str(ev),
                 "--planned", "2500", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ctr = next(c for c in doc["comparisons"] if c["metric"] == "ctr")
    assert ctr["verdict"] == "significant (better)" and ctr["ci"][0] > 0
    assert main(["experiments", "report", "nope", "--exposures", str(ex), "--events", str(ev)]) == 2
    assert "no (non-forced) exposures of experiment 'nope'" in capsys.readouterr().err


# -- interleaving ---------------------------------------------------------------------------------
def test_interleaving_credits_clicks_to_the_contributing_ranker() -> None:
    traffic = simulate_interleave(seed=0)
    report = analysis.analyze_interleave("il-exp", traffic.exposures, traffic.events, planned=1000)
    assert report.arms == ["A", "B"] and report.arm_versions == {"A": "v1", "B": "v2"}
    # recount by hand: each click goes to the team of the clicked item in its exposure
    by_rid = {ex["request_id"]: ex for ex in traffic.exposures}
    manual = {"A": 0, "B": 0}
    for ev in traffic.events:
        ex = by_rid[ev["request_id"]]
        manual[ex["teams"][ex["items"].index(ev["item_id"])]] += 1
    assert report.clicks_credited == manual
    assert report.wins["B"] > report.wins["A"]  # B's order is the truth
    assert report.preference > 0 and report.p_value < 0.01
    assert report.verdict == "significant: B preferred"
    assert "wins: A" in analysis.render(report)


def test_team_draft_balances_teams_and_keeps_each_rankers_order() -> None:
    from cascade_router.interleave import team_draft

    rng = np.random.default_rng(1)
    for seed in range(50):
        a, b = rng.standard_normal(30), rng.standard_normal(30)
        rows, teams = team_draft(a, b, 10, seed)
        assert len(rows) == 10 == len(set(rows))
        assert abs(teams.count(0) - teams.count(1)) <= 1
        for team, scores in ((0, a), (1, b)):
            picked = [r for r, t in zip(rows, teams) if t == team]
            # each team's picks come in its own ranking order
            assert picked == sorted(picked, key=lambda r: -scores[r])
    assert team_draft(np.arange(5.0), np.arange(5.0)[::-1], 10, 0)[0].__len__() == 5
    assert math.isclose(analysis.z_for(0.95), 1.959964, abs_tol=1e-5)
