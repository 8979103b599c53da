"""Time-based train/test splits (and the validation split carved out of train the same way).

Two strategies:

* ``global``: one cut time ``T`` (the ``1 - test_frac`` quantile of timestamps); train = before ``T``,
  test = at/after ``T``; evaluated users are those with history before ``T`` and test interactions.
  The most realistic protocol, preferred whenever it leaves enough evaluable users.
* ``per-user``: for every user the last ``test_frac`` of their interactions by time go to test
  (ties broken by item id, deterministic). Used when the global cut leaves too few evaluable users —
  the case on ml-latest-small, whose users were mostly active in short bursts across 20 years.

``auto`` picks ``global`` when it leaves at least ``max(min_eval_users, min_eval_share * #users)``
evaluable users, else ``per-user``. Either way no user's test interaction precedes one of their
train interactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Strategy = Literal["auto", "global", "per-user"]


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    strategy: str  # "global" or "per-user"
    description: str  # human-readable, printed in the eval table
    cut_ts: int | None  # the global cut time, if any

    def eval_users(self) -> np.ndarray:
        """User codes with both train history and test interactions (sorted)."""
        tr = np.unique(self.train["user_id"].cat.codes.to_numpy(np.int64))
        te = np.unique(self.test["user_id"].cat.codes.to_numpy(np.int64))
        return np.intersect1d(tr, te)


def _global(inter: pd.DataFrame, test_frac: float) -> Split:
    ts = inter["timestamp"].to_numpy()
    cut = int(np.quantile(ts, 1.0 - test_frac))
    is_test = ts >= cut
    iso = pd.Timestamp(cut, unit="s", tz="UTC").isoformat()
    return Split(
        inter[~is_test].reset_index(drop=True), inter[is_test].reset_index(drop=True),
        "global", f"global temporal cut at {iso} (train before, test after)", cut,
    )


def _per_user(inter: pd.DataFrame, test_frac: float) -> Split:
    u = inter["user_id"].cat.codes.to_numpy(np.int64)
    order = np.lexsort((inter["item_id"].cat.codes.to_numpy(), inter["timestamp"].to_numpy(), u))
    us = u[order]
    counts = np.bincount(us, minlength=int(us.max()) + 1 if len(us) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(us)) - starts[us]  # position within the user's time-ordered history
    n_test = np.floor(counts * test_frac).astype(np.int64)
    is_test_sorted = rank >= (counts - n_test)[us]
    is_test = np.empty(len(us), dtype=bool)
    is_test[order] = is_test_sorted
    pct = round(test_frac * 100)
    return Split(
        inter[~is_test].reset_index(drop=True), inter[is_test].reset_index(drop=True),
        "per-user", f"per-user temporal split (each user's last {pct}% of interactions by time)", None,
    )


def temporal_split(
    interactions: pd.DataFrame,
    test_frac: float = 0.2,
    strategy: Strategy = "auto",
    min_eval_users: int = 50,
    min_eval_share: float = 0.25,
) -> Split:
    """Split interactions by time (see module docstring)."""
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac must be in (0, 1), got {test_frac}")
    if strategy not in ("auto", "global", "per-user"):
        raise ValueError(f"unknown split strategy {strategy!r} (field 'strategy'): auto, global or per-user")
    if strategy == "per-user":
        return _per_user(interactions, test_frac)
    g = _global(interactions, test_frac)
    if strategy == "global":
        return g
    n_users = interactions["user_id"].nunique()
    needed = max(min_eval_users, int(min_eval_share * n_users))
    if len(g.eval_users()) >= needed:
        return g
    return _per_user(interactions, test_frac)


def validation_split(train: pd.DataFrame, like: Split, val_frac: float = 0.2) -> Split:
    """Carve a validation split out of ``train`` with the same strategy as ``like``."""
    return temporal_split(train, val_frac, strategy=like.strategy)  # type: ignore[arg-type]
