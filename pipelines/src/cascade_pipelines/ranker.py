"""Ranker: a torch MLP over the FeatureLayout matrix, trained listwise, exported to ONNX.

Training examples come from a time cut (no leakage): features are computed from the history before
the cut, each user's candidate list is what serving would retrieve from that history (two-tower top-K
∪ popular, consumed removed) plus a few random unconsumed items, and labels are the user's
interactions *after* the cut. The loss is a per-user softmax cross-entropy over the candidate list
(multiple positives averaged), which optimises the ordering the pipeline serves.

The input standardisation (training mean/std) is a buffer inside the module, so the exported ONNX
graph takes raw features: ``features`` float32 [N, n_features] -> ``score`` float32 [N].
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from cascade_pipelines.metrics import ndcg_at_k


@dataclass
class RankerConfig:
    hidden: tuple[int, ...] = (128, 64)
    epochs: int = 40
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch_users: int = 64
    dropout: float = 0.1
    holdout: float = 0.2  # share of training users held out for epoch selection
    patience: int = 6
    wide: bool = False  # add a linear (wide) term next to the MLP (deep) term
    seed: int = 0


# A feature whose training spread is below this is standardised as if its spread were this: a column that
# is almost always 0 in training (e.g. a rare category's share of a user's recent events) must not turn a
# serving-time value of 1 into z = 1/std ~ 10^2..10^6, which extrapolates far outside anything the MLP saw
# (and overflows FP16). Constant columns (no spread at all) carried no signal: their z is 0.
MIN_STD = 0.1
CONSTANT_STD = 1e-6


def standardisation_scale(std: np.ndarray) -> np.ndarray:
    """``inv_std`` per column: ``1 / max(std, MIN_STD)``, and 0 for columns constant in training."""
    std = np.asarray(std, dtype=np.float64)
    return np.where(std < CONSTANT_STD, 0.0, 1.0 / np.maximum(std, MIN_STD)).astype(np.float32)


class RankerMLP(nn.Module):
    mean: torch.Tensor  # buffers: training standardisation, baked into the ONNX graph
    inv_std: torch.Tensor

    def __init__(self, n_features: int, hidden: tuple[int, ...], dropout: float,
                 mean: np.ndarray, std: np.ndarray, wide: bool = True) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("inv_std", torch.as_tensor(standardisation_scale(std), dtype=torch.float32))
        layers: list[nn.Module] = []
        d = n_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)
        self.wide = nn.Linear(n_features, 1, bias=False) if wide else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (features - self.mean) * self.inv_std
        out = self.net(z)
        if self.wide is not None:
            out = out + self.wide(z)
        return out.squeeze(-1)


@dataclass
class ListwiseData:
    """One candidate list per user: features [n_c, F], labels [n_c] (1 = interacted after the cut)."""

    features: list[np.ndarray]
    labels: list[np.ndarray]
    n_relevant: list[int]  # all post-cut positives of the user (for NDCG's ideal DCG)

    def stacked(self) -> np.ndarray:
        return np.concatenate(self.features) if self.features else np.zeros((0, 0), np.float32)


def _pad(data: ListwiseData, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = max(len(data.labels[i]) for i in idx)
    f = data.features[idx[0]].shape[1]
    x = np.zeros((len(idx), c, f), np.float32)
    y = np.zeros((len(idx), c), np.float32)
    m = np.zeros((len(idx), c), bool)
    for r, i in enumerate(idx):
        n = len(data.labels[i])
        x[r, :n], y[r, :n], m[r, :n] = data.features[i], data.labels[i], True
    return torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(m)


def listwise_loss(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    pos = labels * mask
    per_user = -(torch.where(pos > 0, logp, torch.zeros_like(logp)) * pos).sum(-1) / pos.sum(-1).clamp(min=1)
    return per_user[pos.sum(-1) > 0].mean()


def list_ndcg(model: RankerMLP, data: ListwiseData, idx: np.ndarray, k: int = 10) -> float:
    model.eval()
    vals = []
    with torch.no_grad():
        for i in idx:
            s = model(torch.as_tensor(data.features[i])).numpy()
            order = np.argsort(-s, kind="stable")
            rel = set(np.flatnonzero(data.labels[i]).tolist())
            # ideal DCG counts every post-cut positive, retrieved or not
            pad = {-(j + 1) for j in range(max(0, data.n_relevant[i] - len(rel)))}
            vals.append(ndcg_at_k(order, rel | pad, k))
    return float(np.mean(vals)) if vals else 0.0


def train_ranker(
    data: ListwiseData, cfg: RankerConfig, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)
) -> tuple[RankerMLP, dict]:
    """Train on users with at least one positive; pick the epoch with the best holdout NDCG@10."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    usable = np.array([i for i, y in enumerate(data.labels) if y.sum() > 0], dtype=np.int64)
    if len(usable) < 2:
        raise ValueError("ranker training needs at least two users with a positive candidate")
    perm = rng.permutation(usable)
    n_hold = max(1, int(round(cfg.holdout * len(perm))))
    hold, train = perm[:n_hold], perm[n_hold:]
    x_all = np.concatenate([data.features[i] for i in train])
    mean, std = x_all.mean(0), x_all.std(0)
    model = RankerMLP(x_all.shape[1], cfg.hidden, cfg.dropout, mean, std, cfg.wide)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, best_epoch, bad, hist = -1.0, None, 0, 0, []
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(train)
        total, steps = 0.0, 0
        for s in range(0, len(order), cfg.batch_users):
            x, y, m = _pad(data, order[s : s + cfg.batch_users])
            loss = listwise_loss(model(x), y, m)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            steps += 1
        score = list_ndcg(model, data, hold)
        hist.append({"epoch": epoch, "loss": total / steps, "holdout_ndcg@10": score})
        log(f"ranker epoch {epoch}/{cfg.epochs} loss {total / steps:.4f} holdout_ndcg@10 {score:.4f} "
            f"({time.perf_counter() - t0:.1f}s)")
        if score > best:
            best, best_state, best_epoch, bad = score, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return model, {"best_epoch": best_epoch, "holdout_ndcg@10": best, "train_users": int(len(train)),
                   "holdout_users": int(len(hold)), "epochs": hist}


def export_onnx(model: RankerMLP, n_features: int, path: Path, input_name: str = "features",
                output_name: str = "score", opset: int = 17) -> None:
    """Write a single-file ONNX graph with a dynamic batch dimension N."""
    model.eval()
    example = torch.zeros(2, n_features, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "N"}, output_name: {0: "N"}}, opset_version=opset, dynamo=False,
        )


def torch_scores(model: RankerMLP, features: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(features, np.float32))).numpy()
