"""Seeded simulated experiment traffic with a known ground truth.

Users are assigned by the router's real :class:`~cascade_router.experiments.Assigner`; exposures are
built by the router's real ``exposure_event``; user events by the stream simulator's real ``stamp``
(the v1 event contract). Only the users' behaviour is simulated: a request is clicked with the
variant's true click-through rate, then carted / bought with fixed conversion probabilities.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from cascade_router.experiments import Assigner, ExperimentsConfig, Variant
from cascade_router.exposures import exposure_event
from cascade_router.interleave import coin_seed, team_draft
from cascade_stream.simulator import Template, stamp

ITEMS = [f"i{k}" for k in range(200)]


def ab_config(split: tuple[float, float] = (50, 50), salt: str = "sim") -> ExperimentsConfig:
    return ExperimentsConfig.single(
        "sim-exp", salt, (Variant(name="control", traffic=split[0]), Variant(name="treatment", traffic=split[1]))
    )


@dataclass
class Traffic:
    exposures: list[dict[str, Any]]
    events: list[dict[str, Any]]


def simulate_ab(
    true_ctr: dict[str, float],
    *,
    n_users: int = 3000,
    requests_per_user: int = 2,
    seed: int = 0,
    assign_with: ExperimentsConfig | None = None,
    declared: ExperimentsConfig | None = None,
    p_cart: float = 0.3,
    p_buy: float = 0.5,
) -> Traffic:
    """``assign_with`` decides who gets which variant; exposures declare ``declared``'s traffic split
    (pass a different one to simulate a broken allocation)."""
    rng = random.Random(seed)
    assign_cfg = assign_with or ab_config()
    declared_cfg = declared or assign_cfg
    assigner = Assigner(assign_cfg)
    declared_traffic = {v.name: v.traffic for v in declared_cfg.experiments[0].variants}
    exposures: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for u in range(n_users):
        uid = f"user-{u}"
        a = assigner.assign(uid)
        for r in range(requests_per_user):
            rid = f"req-{seed}-{u}-{r}"
            items = rng.sample(ITEMS, 10)
            exposures.append(exposure_event(
                request_id=rid, user_id=uid, experiment=a.experiment, variant=a.name, kind=a.kind,
                forced=False, traffic=declared_traffic[a.name], model_version="v1", degraded=False,
                items=items, sources=["ann"] * 10,
            ))
            for item in items[:3]:
                events.append(stamp(Template("impression", uid, item, rid)))
            if rng.random() < true_ctr[a.name]:
                item = rng.choice(items)
                events.append(stamp(Template("click", uid, item, rid)))
                if rng.random() < p_cart:
                    events.append(stamp(Template("add_to_cart", uid, item, rid)))
                    if rng.random() < p_buy:
                        events.append(stamp(Template("purchase", uid, item, rid)))
    return Traffic(exposures, events)


def simulate_interleave(n_requests: int = 1500, seed: int = 0, k: int = 10) -> Traffic:
    """Two rankers score the same 50 candidates; the truth is ranker B's order (A is B plus heavy
    noise). Users click each shown item with position-biased probability of its true relevance."""
    rng = np.random.default_rng(seed)
    exposures: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for r in range(n_requests):
        rid, uid = f"il-{seed}-{r}", f"user-{r % 400}"
        cand = rng.choice(len(ITEMS), size=50, replace=False)
        relevance = rng.standard_normal(50)
        scores_b = relevance + 0.1 * rng.standard_normal(50)
        scores_a = relevance + 2.0 * rng.standard_normal(50)
        rows, teams = team_draft(scores_a, scores_b, k, coin_seed("il-salt", rid))
        items = [ITEMS[cand[i]] for i in rows]
        exposures.append(exposure_event(
            request_id=rid, user_id=uid, experiment="il-exp", variant="interleave", kind="interleave",
            forced=False, traffic=None, model_version="interleave(v1,v2)", degraded=False, items=items,
            sources=["ann"] * len(items), teams=["A" if t == 0 else "B" for t in teams],
            arms={"A": "v1", "B": "v2"},
        ))
        for pos, i in enumerate(rows):
            p_click = 0.25 / (1 + pos) * (1 / (1 + np.exp(-2 * relevance[i])))
            if rng.random() < p_click:
                events.append(stamp(Template("click", uid, items[pos], rid)))
    return Traffic(exposures, events)
