"""Team-draft interleaving (Radlinski, Kurup & Joachims 2008) of two rankings of the same candidates.

Each round the team with fewer picks so far (a coin flip when equal) adds its highest-ranked item not
already in the list; the item remembers its team. Clicks are later credited to the team that
contributed the clicked item (``cascade_pipelines.analysis``): the ranker whose items get more clicks
in a request wins it. The coin flips are seeded by ``sha256(salt:request_id)`` so a request's list can
be reproduced exactly.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def coin_seed(salt: str, request_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{request_id}".encode()).digest()[:8], "big")


def team_draft(
    scores_a: np.ndarray, scores_b: np.ndarray, k: int, seed: int
) -> tuple[list[int], list[int]]:
    """Interleave the rankings induced by two score vectors over the same candidates.

    Returns ``(rows, teams)``: up to ``k`` candidate row indices in list order and, for each, 0 when
    ranker A contributed it, 1 for ranker B. Ties in scores keep candidate order (stable sort).
    """
    n = len(scores_a)
    if len(scores_b) != n:
        raise ValueError(f"arm score vectors differ in length: {n} vs {len(scores_b)}")
    k = min(k, n)
    rankings = (
        np.argsort(-np.asarray(scores_a, dtype=np.float64), kind="stable").tolist(),
        np.argsort(-np.asarray(scores_b, dtype=np.float64), kind="stable").tolist(),
    )
    rng = random.Random(seed)
    cursor = [0, 0]
    picks = [0, 0]
    used: set[int] = set()
    rows: list[int] = []
    teams: list[int] = []
    while len(rows) < k:
        team = 0 if picks[0] < picks[1] else 1 if picks[1] < picks[0] else rng.randrange(2)
        ranking = rankings[team]
        while cursor[team] < n and ranking[cursor[team]] in used:
            cursor[team] += 1
        if cursor[team] >= n:  # cannot happen while len(rows) < n, kept for safety
            break
        row = ranking[cursor[team]]
        used.add(row)
        rows.append(row)
        teams.append(team)
        picks[team] += 1
    return rows, teams
