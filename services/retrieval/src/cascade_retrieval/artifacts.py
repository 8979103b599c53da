"""Everything retrieval needs from one registry version, loaded once at start-up.

:class:`VersionArtifacts` is a handle shared by the stages of one version's pipeline: it is created
without I/O and loaded by the first stage's ``initialize()`` (later stages reuse the loaded data).
Files are validated against the manifest so a broken registry fails start-up with a clear message.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np
import pyarrow.parquet as pq

from cascade_core.registry import ModelManifest, Registry


@dataclass(frozen=True, slots=True)
class RetrievalData:
    manifest: ModelManifest
    item_ids: np.ndarray  # object [n_items]: row -> item id
    item_index: dict[str, int]  # item id -> row
    user_index: dict[str, int]  # user id -> embedding row
    user_embeddings: np.ndarray  # float32 [n_users, dim]
    ann: hnswlib.Index
    popular_rows: np.ndarray  # int64 item rows, most popular first
    popular_scores: np.ndarray  # float32 log1p(popularity), aligned with popular_rows
    consumed_indptr: np.ndarray  # int64 [n_users + 1]
    consumed_indices: np.ndarray  # int32 item rows

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def item_rows(self, item_ids: frozenset[str] | set[str]) -> np.ndarray:
        """Rows of the given ids that are in the catalog (unknown ids are ignored)."""
        idx = self.item_index
        return np.fromiter((idx[i] for i in item_ids if i in idx), dtype=np.int64)

    def user_row(self, user_id: str) -> int | None:
        return self.user_index.get(user_id)

    def consumed_rows(self, user_row: int | None) -> np.ndarray:
        if user_row is None:
            return self.consumed_indices[:0]
        return self.consumed_indices[self.consumed_indptr[user_row]:self.consumed_indptr[user_row + 1]]


def _check(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise ValueError(f"registry file {path}: {msg}")


def load_retrieval_data(registry: Registry, version: str) -> RetrievalData:
    """Read and validate one version's retrieval artifacts (blocking I/O: call off the event loop)."""
    m = registry.manifest(version)
    d = registry.path(m.version_id)
    f = m.files

    p = d / f.items
    item_ids = np.asarray(pq.read_table(p, columns=["item_id"]).column("item_id").to_pylist(), dtype=object)
    _check(len(item_ids) == m.n_items, p, f"{len(item_ids)} items, manifest says n_items={m.n_items}")
    item_index = {iid: i for i, iid in enumerate(item_ids)}
    _check(len(item_index) == len(item_ids), p, "item_id values are not unique")

    p = d / f.user_ids
    user_ids = json.loads(p.read_text())
    user_index = {str(u): i for i, u in enumerate(user_ids)}
    p = d / f.user_embeddings
    user_emb = np.ascontiguousarray(np.load(p), dtype=np.float32)
    _check(user_emb.shape == (len(user_ids), m.embedding_dim), p,
           f"shape {user_emb.shape}, expected ({len(user_ids)}, {m.embedding_dim}) from user_ids/manifest")

    p = d / f.ann_index
    _check(m.ann.library == "hnswlib", p, f"ann library {m.ann.library!r} is not supported (hnswlib only)")
    index = hnswlib.Index(space=m.ann.space, dim=m.ann.dim)
    index.load_index(str(p), max_elements=m.n_items)
    _check(index.get_current_count() == m.n_items, p,
           f"{index.get_current_count()} vectors, manifest says n_items={m.n_items}")
    index.set_ef(m.ann.ef_search)
    index.set_num_threads(1)

    p = d / f.popular
    popular = json.loads(p.read_text())
    try:
        rows = np.fromiter((item_index[e["item_id"]] for e in popular), dtype=np.int64, count=len(popular))
    except KeyError as e:
        raise ValueError(f"registry file {p}: item {e.args[0]!r} is not in {f.items}") from None
    counts = np.fromiter((float(e["score"]) for e in popular), dtype=np.float64, count=len(popular))
    _check(bool(np.all(counts >= 0)), p, "negative popularity score")

    p = d / f.consumed
    with np.load(p) as z:
        indptr = z["indptr"].astype(np.int64)
        indices = z["indices"].astype(np.int32)
    n_rows = len(user_ids) + 1
    _check(indptr.shape == (n_rows,), p, f"indptr has {len(indptr)} entries, expected {n_rows}")
    _check(int(indptr[-1]) == len(indices), p, "indptr[-1] does not match len(indices)")

    return RetrievalData(
        manifest=m, item_ids=item_ids, item_index=item_index, user_index=user_index,
        user_embeddings=user_emb, ann=index,
        popular_rows=rows, popular_scores=counts.astype(np.float32),  # already log1p(count)
        consumed_indptr=indptr, consumed_indices=indices,
    )


class VersionArtifacts:
    """Lazily loaded, shared handle on one version's :class:`RetrievalData`."""

    def __init__(self, registry: Registry, version: str) -> None:
        self.registry = registry
        self.version = version
        self._data: RetrievalData | None = None
        self._lock = asyncio.Lock()

    async def load(self) -> RetrievalData:
        async with self._lock:
            if self._data is None:
                self._data = await asyncio.to_thread(load_retrieval_data, self.registry, self.version)
        return self._data

    @property
    def data(self) -> RetrievalData:
        if self._data is None:
            raise RuntimeError(f"retrieval artifacts of {self.version} used before initialize()")
        return self._data
