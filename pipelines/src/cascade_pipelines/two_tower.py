"""Two-tower retrieval model (torch): user tower and item tower trained with in-batch sampled softmax.

* item tower: item-id embedding + mean of its category embeddings -> linear -> L2-normalised [dim]
* user tower: [user-id embedding | mean of the user's history item embeddings] -> MLP -> L2-normalised
  During training the target item is left out of its own history mean (leave-one-out), so the tower
  learns to predict *other* items from history instead of echoing it; at export time the history is the
  full history available at that point in time (the tower is inductive in history).
* loss: in-batch sampled softmax over ``u·v / temperature`` with logQ correction (``- log q_item``,
  q = the item's sampling frequency) so popular items are not over-penalised as negatives; in-batch
  duplicates of the positive item are masked.

Scores are inner products of unit vectors (cosine), which is what the ``ip`` ANN index searches.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class TwoTowerConfig:
    dim: int = 64
    epochs: int = 20
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 0.0
    temperature: float = 0.07
    patience: int = 3  # epochs without validation improvement before stopping
    seed: int = 0


class TwoTower(nn.Module):
    genres: torch.Tensor  # buffer: row-normalised multi-hot categories [n_items, n_categories]

    def __init__(self, n_users: int, n_items: int, genre_mat: np.ndarray, dim: int = 64) -> None:
        super().__init__()
        self.dim = dim
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        self.hist_emb = nn.EmbeddingBag(n_items, dim, mode="sum")
        g = torch.as_tensor(genre_mat, dtype=torch.float32)
        self.register_buffer("genres", g / g.sum(1, keepdim=True).clamp(min=1.0))
        self.cat_emb = nn.Parameter(torch.empty(max(1, g.shape[1]), dim))
        self.item_proj = nn.Linear(dim, dim)
        self.user_mlp = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        for e in (self.user_emb.weight, self.item_emb.weight, self.hist_emb.weight, self.cat_emb):
            nn.init.normal_(e, std=0.05)

    def item_vec(self, items: torch.Tensor) -> torch.Tensor:
        cat = self.genres[items] @ self.cat_emb if self.genres.shape[1] else 0.0
        return F.normalize(self.item_proj(self.item_emb(items) + cat), dim=-1)

    def user_vec(self, users: torch.Tensor, hist_sum: torch.Tensor, hist_cnt: torch.Tensor) -> torch.Tensor:
        mean = hist_sum / hist_cnt.clamp(min=1.0).unsqueeze(-1)
        return F.normalize(self.user_mlp(torch.cat([self.user_emb(users), mean], dim=-1)), dim=-1)


class History:
    """Per-user item lists (CSR) used by the user tower."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int) -> None:
        order = np.argsort(users, kind="stable")
        self.items = torch.as_tensor(items[order], dtype=torch.long)
        counts = np.bincount(users, minlength=n_users)
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.counts = torch.as_tensor(counts, dtype=torch.float32)

    def bag(self, users: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat item indices, offsets) for EmbeddingBag over the given users' histories."""
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lens = ends - starts
        idx = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
        offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
        return self.items[torch.as_tensor(idx)], torch.as_tensor(offsets, dtype=torch.long)


def user_embeddings(model: TwoTower, history: History, users: np.ndarray, batch: int = 4096) -> np.ndarray:
    """float32 [len(users), dim] from the users' full histories (no leave-one-out)."""
    users = np.asarray(users, dtype=np.int64)
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(users), batch):
            u = users[s : s + batch]
            flat, offs = history.bag(u)
            hs = model.hist_emb(flat, offs) if len(flat) else torch.zeros(len(u), model.dim)
            out.append(model.user_vec(torch.as_tensor(u), hs, history.counts[u]).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.dim), np.float32)


def item_embeddings(model: TwoTower, n_items: int, batch: int = 65536) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate(
            [model.item_vec(torch.arange(s, min(n_items, s + batch))).numpy() for s in range(0, n_items, batch)]
        ).astype(np.float32)


def train_two_tower(
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    genre_mat: np.ndarray,
    cfg: TwoTowerConfig,
    validate: Callable[[TwoTower], float] | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> tuple[TwoTower, dict]:
    """Train on (user, item) positives; keep the epoch with the best ``validate(model)`` (higher = better)."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n_items = genre_mat.shape[0]
    model = TwoTower(n_users, n_items, genre_mat, cfg.dim)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    hist = History(users, items, n_users)
    freq = np.bincount(items, minlength=n_items).astype(np.float64)
    log_q = torch.as_tensor(np.log(np.maximum(freq, 1.0) / len(items)), dtype=torch.float32)
    best, best_state, best_epoch, bad, history_log = -np.inf, None, 0, 0, []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = rng.permutation(len(users))
        total, steps = 0.0, 0
        for s in range(0, len(perm), cfg.batch_size):
            b = perm[s : s + cfg.batch_size]
            bu, bi = users[b], items[b]
            uniq, inv = np.unique(bu, return_inverse=True)
            flat, offs = hist.bag(uniq)
            hsum = model.hist_emb(flat, offs)[torch.as_tensor(inv)]
            ti = torch.as_tensor(bi)
            hsum = hsum - model.hist_emb.weight[ti]  # leave the target out of its own history
            hcnt = hist.counts[torch.as_tensor(bu)] - 1.0
            uv = model.user_vec(torch.as_tensor(bu), hsum, hcnt)
            iv = model.item_vec(ti)
            logits = uv @ iv.T / cfg.temperature - log_q[ti].unsqueeze(0)
            same = ti.unsqueeze(0) == ti.unsqueeze(1)
            logits = logits.masked_fill(same & ~torch.eye(len(b), dtype=torch.bool), float("-inf"))
            loss = F.cross_entropy(logits, torch.arange(len(b)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
            steps += 1
        msg = f"two-tower epoch {epoch}/{cfg.epochs} loss {total / max(steps, 1):.4f}"
        score = None
        if validate is not None:
            score = float(validate(model))
            msg += f" val_recall@100 {score:.4f}"
            if score > best:
                best, best_state, best_epoch, bad = score, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                bad += 1
        log(f"{msg} ({time.perf_counter() - t0:.1f}s)")
        history_log.append({"epoch": epoch, "loss": total / max(steps, 1), "val_recall@100": score})
        if validate is not None and bad >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = cfg.epochs
    return model, {"best_epoch": best_epoch, "best_val_recall@100": None if best == -np.inf else best,
                   "epochs": history_log}
