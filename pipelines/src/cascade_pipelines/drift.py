"""The drift loop: reference distributions, PSI/KS drift checks, retrain requests and a gated retrain.

    python -m cascade_pipelines.drift --bootstrap 127.0.0.1:9092 --window-minutes 60     # check
    python -m cascade_pipelines.drift --events-file events.jsonl                           # check (offline)
    python -m cascade_pipelines.drift --retrain --dataset ml-latest-small                  # act on requests
    python -m cascade_pipelines.drift --write-reference [--events-file baseline.jsonl]     # new reference

**What is compared.** Every engagement event (``view``, ``click``, ``add_to_cart``, ``purchase``) is a
(user, item) pair. Its features are the served version's ranker inputs for that pair — every user
and item feature of the :class:`~cascade_core.features.FeatureLayout` from the version's Feast tables
(manifest defaults for unknown users), the item's ``item_category`` — and ``ranker_score``, the
version's ONNX ranker score of the pair (retrieval feature = the two-tower inner product). One code
path (:meth:`VersionData.pair_features`) computes them for the reference and for the recent window,
so the two distributions are comparable by construction. A shift in *who engages with what* (new
tastes, a catalog change, a broken tracker) moves these distributions; so does a ranker whose scores
no longer match what users pick.

**Reference** (``<registry>/<version>/reference_stats.json``): written by training when it knows its
interactions; otherwise computed here from the version's own files (:func:`reference_from_version`:
pairs sampled like the training interactions — item by interaction count from ``items.parquet``,
user among the item's consumers from ``consumed.npz``), or from a baseline window of events
(``--write-reference --events-file/--bootstrap``). Per feature: decile bin edges and proportions
(for PSI) and a 2,000-value sample (for KS); categorical features keep category proportions.

**Check** — over the window's events: PSI per feature (bins of the reference, proportions floored at
1e-4) and, for numeric features, the two-sample KS statistic and p-value. A feature drifts when
``PSI >= --psi-threshold`` (0.2, the usual "significant shift") or, for features with at least 20
distinct reference values, ``KS D >= --ks-threshold`` with ``p < 0.001``. With at least
``--min-events`` events and a drifting feature, a retrain request is written to
``<artifacts>/retrain_requests/`` (one pending request per version at a time). Metrics go to a
Prometheus textfile (``--metrics-file``; node-exporter textfile collector format):
``cascade_drift_psi``, ``cascade_drift_ks_statistic``, ``cascade_drift_ks_pvalue``,
``cascade_drift_max_psi``, ``cascade_drift_detected``, ``cascade_drift_events``,
``cascade_drift_last_run_timestamp_seconds``, ``cascade_retrain_requests_pending``.

**Gated retrain** (``--retrain``): for each pending request, train a candidate with the training
pipeline into a staging registry, copy it into the registry *without* moving ``LATEST``, compute its
reference, and promote it (move ``LATEST``) only if its offline metric (``--gate-metric``, default
``pipeline.ndcg@10``) beats the current version's by more than ``--min-improvement``; otherwise it stays
registered for review. The request moves to ``retrain_requests/done/`` with the outcome.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from cascade_core.errors import CascadeError, NotFoundError
from cascade_core.features import FeatureLayout
from cascade_core.registry import Registry, artifacts_dir

REFERENCE_FILE = "reference_stats.json"
ENGAGEMENTS = ("view", "click", "add_to_cart", "purchase")
CATEGORICAL = ("item_category",)
SCORE = "ranker_score"
PSI_FLOOR = 1e-4
MIN_DISTINCT_FOR_KS = 20


# -- one version's serving data ------------------------------------------------------------------
class VersionData:
    """The served version's feature tables, embeddings and ranker (read once)."""

    def __init__(self, registry: Registry, version: str) -> None:
        import onnxruntime as ort
        import pyarrow.parquet as pq

        self.registry = registry
        self.version = registry.resolve(version)
        m = self.manifest = registry.manifest(self.version)
        d = registry.path(self.version)
        self.layout = FeatureLayout.from_names(m.ranker.feature_names)
        defaults = np.asarray(m.ranker.feature_defaults, dtype=np.float32)
        u, i = self.layout.user_dim, self.layout.item_dim
        self.user_default = defaults[:u]
        self.item_default = defaults[u : u + i]
        items = pq.read_table(d / m.files.items, columns=["item_id", "category", "popularity"]).to_pydict()
        self.item_ids = [str(x) for x in items["item_id"]]
        self.item_row = {iid: r for r, iid in enumerate(self.item_ids)}
        self.item_category = np.asarray([str(c) for c in items["category"]], dtype=object)
        self.popularity = np.asarray(items["popularity"], dtype=np.float64)
        feast = d / m.files.feast_dir
        self.user_vecs, self.user_vec_row = self._table(
            feast / "user_features.parquet", "user_id", "user_vec", u
        )
        item_vecs, item_vec_row = self._table(feast / "item_features.parquet", "item_id", "item_vec", i)
        # item vectors in catalog order (defaults where the table has no row)
        self.item_vecs = np.tile(self.item_default, (len(self.item_ids), 1))
        for iid, r in item_vec_row.items():
            if iid in self.item_row:
                self.item_vecs[self.item_row[iid]] = item_vecs[r]
        user_ids_path = d / m.files.user_ids
        emb_users = json.loads(user_ids_path.read_text()) if user_ids_path.is_file() else []
        self.emb_user_row = {str(x): r for r, x in enumerate(emb_users)}
        ue, ie = d / m.files.user_embeddings, d / m.files.item_embeddings
        self.user_emb = np.load(ue) if ue.is_file() else None
        self.item_emb = np.load(ie) if ie.is_file() else None
        self.consumed_path = d / m.files.consumed
        self.session = ort.InferenceSession(str(d / m.files.ranker), providers=["CPUExecutionProvider"])
        self.input_name = m.ranker.input_name

    @staticmethod
    def _table(path: Path, key: str, col: str, dim: int) -> tuple[np.ndarray, dict[str, int]]:
        import pyarrow.parquet as pq

        if not path.is_file():
            return np.zeros((0, dim), np.float32), {}
        t = pq.read_table(path, columns=[key, col]).to_pydict()
        if not t[col]:
            return np.zeros((0, dim), np.float32), {}
        mat = np.asarray(t[col], dtype=np.float32).reshape(-1, dim)
        return mat, {str(k): r for r, k in enumerate(t[key])}

    def score(self, user_mat: np.ndarray, item_mat: np.ndarray, retrieval: np.ndarray) -> np.ndarray:
        x = self.layout.assemble_batch(user_mat, item_mat, retrieval)
        out = []
        for s in range(0, len(x), 4096):
            out.append(np.asarray(self.session.run(None, {self.input_name: x[s : s + 4096]})[0]).reshape(-1))
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def pair_features(self, user_ids: list[str], item_ids: list[str]) -> tuple[dict[str, np.ndarray], int]:
        """Features of (user, item) pairs; pairs with items outside the catalog are dropped.

        Returns ``(features by name, dropped pairs)``.
        """
        rows = [self.item_row.get(str(i)) for i in item_ids]
        keep = [k for k, r in enumerate(rows) if r is not None]
        dropped = len(rows) - len(keep)
        item_rows = np.asarray([rows[k] for k in keep], dtype=np.int64)
        users = [str(user_ids[k]) for k in keep]
        user_mat = np.tile(self.user_default, (len(users), 1))
        for n, uid in enumerate(users):
            r = self.user_vec_row.get(uid)
            if r is not None:
                user_mat[n] = self.user_vecs[r]
        item_mat = (
            self.item_vecs[item_rows] if len(item_rows) else np.zeros((0, self.layout.item_dim), np.float32)
        )
        retrieval = np.zeros(len(users), dtype=np.float32)
        if self.user_emb is not None and self.item_emb is not None:
            for n, uid in enumerate(users):
                r = self.emb_user_row.get(uid)
                if r is not None:
                    retrieval[n] = float(self.user_emb[r] @ self.item_emb[item_rows[n]])
        feats: dict[str, np.ndarray] = {}
        for j, name in enumerate(self.layout.user_names):
            feats[name] = user_mat[:, j].astype(np.float64)
        for j, name in enumerate(self.layout.item_names):
            feats[name] = item_mat[:, j].astype(np.float64)
        feats["item_category"] = (
            self.item_category[item_rows] if len(item_rows) else np.zeros(0, dtype=object)
        )
        feats[SCORE] = self.score(user_mat, item_mat, retrieval) if len(users) else np.zeros(0)
        return feats, dropped


# -- distributions -------------------------------------------------------------------------------
def summarize(
    values: dict[str, np.ndarray], n_bins: int = 10, sample: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Reference summary per feature: numeric (quantile edges, proportions, sorted sample) or categorical."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, v in values.items():
        if name in CATEGORICAL:
            cats, counts = np.unique(np.asarray(v, dtype=str), return_counts=True)
            out[name] = {"kind": "categorical", "categories": cats.tolist(),
                         "props": (counts / max(1, counts.sum())).tolist()}
            continue
        v = np.asarray(v, dtype=np.float64)
        qs = np.quantile(v, np.linspace(0, 1, n_bins + 1)[1:-1]) if len(v) else np.zeros(0)
        edges = np.unique(np.round(qs, 9))
        props = np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1) / max(1, len(v))
        smp = np.sort(rng.choice(v, size=min(sample, len(v)), replace=False)) if len(v) else v
        out[name] = {"kind": "numeric", "edges": edges.tolist(), "props": props.tolist(),
                     "sample": np.round(smp, 6).tolist(), "mean": float(v.mean()) if len(v) else 0.0,
                     "distinct": int(len(np.unique(v)))}
    return out


def psi(ref_props: Iterable[float], cur_props: Iterable[float]) -> float:
    r = np.maximum(np.asarray(list(ref_props), dtype=np.float64), PSI_FLOOR)
    c = np.maximum(np.asarray(list(cur_props), dtype=np.float64), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


@dataclass
class FeatureDrift:
    feature: str
    kind: str
    psi: float
    ks_statistic: float | None
    ks_pvalue: float | None
    drifted: bool


def compare(reference: dict[str, Any], current: dict[str, np.ndarray], psi_threshold: float = 0.2,
            ks_threshold: float = 0.2) -> list[FeatureDrift]:
    from cascade_pipelines.analysis import ks_2samp

    out = []
    for name, ref in reference.items():
        if name not in current:
            continue
        v = current[name]
        if ref["kind"] == "categorical":
            cats = ref["categories"]
            index = {c: k for k, c in enumerate(cats)}
            counts = np.zeros(len(cats) + 1)  # + unseen categories
            for c in np.asarray(v, dtype=str):
                counts[index.get(c, len(cats))] += 1
            cur = counts / max(1, counts.sum())
            p = psi([*ref["props"], 0.0], cur)
            out.append(FeatureDrift(name, "categorical", p, None, None, p >= psi_threshold))
            continue
        v = np.asarray(v, dtype=np.float64)
        edges = np.asarray(ref["edges"], dtype=np.float64)
        cur = np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1) / max(1, len(v))
        p = psi(ref["props"], cur)
        d, pv = ks_2samp(np.asarray(ref["sample"]), v)
        # KS assumes a continuous distribution: on a few distinct values its D measures the mass of
        # single points, so it only votes for (near-)continuous features; PSI covers the rest.
        continuous = ref.get("distinct", MIN_DISTINCT_FOR_KS) >= MIN_DISTINCT_FOR_KS
        ks_drift = continuous and d >= ks_threshold and pv < 1e-3
        out.append(FeatureDrift(name, "numeric", p, d, pv, p >= psi_threshold or ks_drift))
    return out


# -- references ----------------------------------------------------------------------------------
def reference_path(registry: Registry, version: str) -> Path:
    return registry.path(version) / REFERENCE_FILE


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    tmp.replace(path)


def reference_pairs_from_version(
    vd: VersionData, n: int = 5000, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Pairs distributed like the training interactions: item by interaction count, user among the
    item's consumers (``consumed.npz``; any served user when the item has none)."""
    rng = np.random.default_rng(seed)
    pop = np.maximum(vd.popularity, 0.0)
    p = pop / pop.sum() if pop.sum() > 0 else np.full(len(pop), 1.0 / len(pop))
    items = rng.choice(len(pop), size=n, p=p)
    users_by_row = list(vd.user_vec_row) or list(vd.emb_user_row) or [""]
    emb_users = list(vd.emb_user_row)
    consumers: dict[int, np.ndarray] = {}
    if vd.consumed_path.is_file() and emb_users:
        z = np.load(vd.consumed_path)
        indptr, indices = z["indptr"], z["indices"]
        user_of = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        order = np.argsort(indices, kind="stable")
        si, su = indices[order], user_of[order]
        bounds = np.searchsorted(si, np.arange(len(pop) + 1))
        consumers = {r: su[bounds[r]:bounds[r + 1]] for r in np.unique(items).tolist()}
    users = []
    for r in items.tolist():
        cs = consumers.get(r)
        if cs is not None and len(cs):
            users.append(emb_users[int(cs[rng.integers(len(cs))])])
        else:
            users.append(users_by_row[int(rng.integers(len(users_by_row)))])
    return users, [vd.item_ids[r] for r in items.tolist()]


def engagement_pairs(events: Iterable[dict[str, Any]]) -> tuple[list[str], list[str]]:
    users, items = [], []
    for ev in events:
        if ev.get("event_type") in ENGAGEMENTS and ev.get("user_id") is not None \
                and ev.get("item_id") is not None:
            users.append(str(ev["user_id"]))
            items.append(str(ev["item_id"]))
    return users, items


def build_reference(vd: VersionData, events: list[dict[str, Any]] | None = None, *, n: int = 5000,
                    seed: int = 0) -> dict[str, Any]:
    """Reference summary of ``vd`` from engagement ``events`` (a baseline window) or the version's files."""
    if events is not None:
        users, items = engagement_pairs(events)
        source = f"events ({len(users)} engagement events)"
    else:
        users, items = reference_pairs_from_version(vd, n, seed)
        source = f"version files ({n} pairs sampled like the training interactions)"
    feats, dropped = vd.pair_features(users, items)
    if not len(feats[SCORE]):
        raise ValueError(f"no usable (user, item) pairs for a reference of {vd.version} ({dropped} dropped)")
    return {
        "version": vd.version, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source, "n": int(len(feats[SCORE])), "features": summarize(feats, seed=seed),
    }


def ensure_reference(registry: Registry, version: str, vd: VersionData | None = None) -> dict[str, Any]:
    """The version's reference_stats.json, computed from its files (and written) when missing."""
    path = reference_path(registry, version)
    if path.is_file():
        return json.loads(path.read_text())
    ref = build_reference(vd or VersionData(registry, version))
    _write_json(path, ref)
    return ref


# -- the check -----------------------------------------------------------------------------------
@dataclass
class DriftResult:
    version: str
    n_events: int
    dropped: int
    features: list[FeatureDrift]
    detected: bool
    enough_data: bool
    request: Path | None = None

    @property
    def max_psi(self) -> float:
        return max((f.psi for f in self.features), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "n_events": self.n_events, "dropped": self.dropped,
                "detected": self.detected, "enough_data": self.enough_data, "max_psi": self.max_psi,
                "request": str(self.request) if self.request else None,
                "features": [f.__dict__ for f in self.features]}


def window(events: Iterable[dict[str, Any]], now_ms: int, minutes: float) -> list[dict[str, Any]]:
    lo, hi = now_ms - int(minutes * 60_000), now_ms + 5 * 60_000
    out = []
    for ev in events:
        ts = ev.get("timestamp")
        if isinstance(ts, (int, float)) and lo <= ts <= hi:
            out.append(ev)
    return out


def check(registry: Registry, version: str, events: list[dict[str, Any]], *, psi_threshold: float = 0.2,
          ks_threshold: float = 0.2, min_events: int = 200, vd: VersionData | None = None) -> DriftResult:
    vd = vd or VersionData(registry, version)
    reference = ensure_reference(registry, vd.version, vd)
    users, items = engagement_pairs(events)
    feats, dropped = vd.pair_features(users, items)
    n = int(len(feats[SCORE]))
    drifts = compare(reference["features"], feats, psi_threshold, ks_threshold) if n else []
    enough = n >= min_events
    return DriftResult(vd.version, n, dropped, drifts, enough and any(f.drifted for f in drifts), enough)


def requests_dir(root: Path) -> Path:
    return root / "retrain_requests"


def pending_requests(root: Path) -> list[Path]:
    d = requests_dir(root)
    return sorted(p for p in d.glob("*.json")) if d.is_dir() else []


def write_request(root: Path, result: DriftResult, psi_threshold: float) -> Path | None:
    """A retrain request for ``result.version`` unless one is already pending for it."""
    for p in pending_requests(root):
        try:
            if json.loads(p.read_text()).get("version") == result.version:
                return None
        except (OSError, ValueError):
            continue
    now = datetime.now(timezone.utc)
    path = requests_dir(root) / f"{now:%Y%m%dT%H%M%S}-{result.version}.json"
    drifted = sorted((f for f in result.features if f.drifted), key=lambda f: -f.psi)
    _write_json(path, {
        "status": "pending", "created_at": now.isoformat(timespec="seconds"), "version": result.version,
        "reason": f"{len(drifted)} features drifted (max PSI {result.max_psi:.3f} >= {psi_threshold})",
        "n_events": result.n_events, "features": [f.__dict__ for f in drifted],
    })
    return path


def _labels(**kw: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in kw.items()) + "}"


def write_metrics(path: Path, result: DriftResult, pending: int) -> None:
    """Prometheus textfile (atomic replace) for the node-exporter textfile collector."""
    v = result.version
    lines = [
        "# HELP cascade_drift_psi Population stability index of a feature, recent window vs reference.",
        "# TYPE cascade_drift_psi gauge",
        *(f"cascade_drift_psi{_labels(version=v, feature=f.feature)} {f.psi:.6g}" for f in result.features),
        "# HELP cascade_drift_ks_statistic Two-sample KS statistic of a numeric feature vs reference.",
        "# TYPE cascade_drift_ks_statistic gauge",
        *(f"cascade_drift_ks_statistic{_labels(version=v, feature=f.feature)} {f.ks_statistic:.6g}"
          for f in result.features if f.ks_statistic is not None),
        "# HELP cascade_drift_ks_pvalue Asymptotic p-value of the KS statistic.",
        "# TYPE cascade_drift_ks_pvalue gauge",
        *(f"cascade_drift_ks_pvalue{_labels(version=v, feature=f.feature)} {f.ks_pvalue:.6g}"
          for f in result.features if f.ks_pvalue is not None),
        "# HELP cascade_drift_max_psi Largest PSI over all features.",
        "# TYPE cascade_drift_max_psi gauge",
        f"cascade_drift_max_psi{_labels(version=v)} {result.max_psi:.6g}",
        "# HELP cascade_drift_detected 1 when a feature drifted beyond its threshold with enough events.",
        "# TYPE cascade_drift_detected gauge",
        f"cascade_drift_detected{_labels(version=v)} {int(result.detected)}",
        "# HELP cascade_drift_events Engagement events in the checked window.",
        "# TYPE cascade_drift_events gauge",
        f"cascade_drift_events{_labels(version=v)} {result.n_events}",
        "# HELP cascade_drift_last_run_timestamp_seconds When the drift job last finished.",
        "# TYPE cascade_drift_last_run_timestamp_seconds gauge",
        f"cascade_drift_last_run_timestamp_seconds{_labels(version=v)} {time.time():.3f}",
        "# HELP cascade_retrain_requests_pending Retrain requests waiting for the gated retrain.",
        "# TYPE cascade_retrain_requests_pending gauge",
        f"cascade_retrain_requests_pending {pending}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".prom.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


# -- gated retrain -------------------------------------------------------------------------------
def metric_value(metrics: dict[str, Any], dotted: str) -> float | None:
    cur: Any = metrics
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    try:
        value = float(cur)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass
class GateDecision:
    promote: bool
    candidate: str
    current: str | None
    metric: str
    candidate_value: float | None
    current_value: float | None
    reason: str


def gate(registry: Registry, candidate: str, metric: str = "pipeline.ndcg@10",
         min_improvement: float = 0.0) -> GateDecision:
    """Promote ``candidate`` only if its offline ``metric`` beats LATEST's by more than
    ``min_improvement``."""
    try:
        current: str | None = registry.latest()
    except NotFoundError:  # no LATEST yet: nothing to beat
        current = None
    cand_v = metric_value(registry.manifest(candidate).metrics, metric)
    if cand_v is None:
        return GateDecision(False, candidate, current, metric, None, None,
                            f"candidate {candidate} has no metric {metric}: kept for review")
    if current is None or current == candidate:
        return GateDecision(True, candidate, current, metric, cand_v, None, "no current version to beat")
    cur_v = metric_value(registry.manifest(current).metrics, metric)
    if cur_v is None:
        return GateDecision(True, candidate, current, metric, cand_v, None,
                            f"current {current} has no metric {metric}: candidate promoted")
    if cand_v > cur_v + min_improvement:
        return GateDecision(True, candidate, current, metric, cand_v, cur_v,
                            f"{metric} {cand_v:.4f} beats {cur_v:.4f} (+{min_improvement:g} required)")
    return GateDecision(False, candidate, current, metric, cand_v, cur_v,
                        f"{metric} {cand_v:.4f} does not beat {cur_v:.4f} (+{min_improvement:g} required): "
                        "kept for review")


def register_candidate(staging_root: Path, registry: Registry, version: str) -> Path:
    """Copy a staged version into the registry; the manifest goes last (it marks the version complete)."""
    src = Registry(staging_root).path(version)
    dst = registry.create_version_dir(version)
    for item in src.iterdir():
        if item.name == "manifest.json":
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name)
        else:
            shutil.copy2(item, dst / item.name)
    shutil.copy2(src / "manifest.json", dst / "manifest.json.tmp")
    (dst / "manifest.json.tmp").replace(dst / "manifest.json")
    return dst


def retrain(root: Path, train_params: Any, *, metric: str = "pipeline.ndcg@10", min_improvement: float = 0.0,
            force: bool = False) -> list[dict[str, Any]]:
    """Act on pending retrain requests (or once with ``force``): train, register, gate, record."""
    from cascade_pipelines import train

    registry = Registry(root)
    pending = pending_requests(root)
    if not pending and not force:
        return []
    with tempfile.TemporaryDirectory(prefix="cascade-retrain-") as tmp:
        staged = train.run(train_params, Path(tmp))
        register_candidate(Path(tmp), registry, staged)
    ensure_reference(registry, staged)
    decision = gate(registry, staged, metric, min_improvement)
    if decision.promote:
        registry.set_latest(staged)
    outcome = {"outcome": "promoted" if decision.promote else "kept_for_review", **decision.__dict__,
               "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    done = requests_dir(root) / "done"
    results = []
    for p in pending:
        doc = json.loads(p.read_text())
        doc.update(status="done", result=outcome)
        _write_json(done / p.name, doc)
        p.unlink()
        results.append(doc)
    return results or [{"status": "done", "forced": True, "result": outcome}]


# -- command line --------------------------------------------------------------------------------
def _events(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    from cascade_pipelines.analysis import read_jsonl, read_topic

    if args.events_file:
        return read_jsonl(args.events_file)
    if args.bootstrap:
        return read_topic(args.bootstrap, args.topic, args.timeout)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cascade_pipelines.drift", description=__doc__.split("\n")[0])
    ap.add_argument("--artifacts", type=Path, default=None,
                    help="registry root (default $CASCADE_ARTIFACTS_DIR)")
    ap.add_argument("--model-version", default="latest", help="the served version to check")
    ev = ap.add_argument_group("events")
    ev.add_argument("--events-file", type=Path, default=None, help="user events as JSON lines")
    ev.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (reads --topic)")
    ev.add_argument("--topic", default="user-events")
    ev.add_argument("--timeout", type=float, default=120.0, help="seconds to read the topic to its end")
    ev.add_argument("--window-minutes", type=float, default=60.0, help="recent window (by event timestamp)")
    ev.add_argument("--now-ms", type=int, default=None, help="end of the window (default: now)")
    ap.add_argument("--psi-threshold", type=float, default=0.2)
    ap.add_argument("--ks-threshold", type=float, default=0.2)
    ap.add_argument("--min-events", type=int, default=200)
    ap.add_argument("--metrics-file", type=Path, default=None, help="default <artifacts>/drift/drift.prom")
    ap.add_argument("--write-reference", action="store_true",
                    help="(re)write the version's reference_stats.json (from the events if given)")
    rt = ap.add_argument_group("gated retrain")
    rt.add_argument("--retrain", action="store_true", help="train, register and gate for pending requests")
    rt.add_argument("--force", action="store_true", help="retrain even without a pending request")
    rt.add_argument("--gate-metric", default="pipeline.ndcg@10")
    rt.add_argument("--min-improvement", type=float, default=0.0)
    rt.add_argument("--dataset", default="ml-latest-small")
    rt.add_argument("--epochs", type=int, default=20)
    rt.add_argument("--ranker-epochs", type=int, default=40)
    rt.add_argument("--seed", type=int, default=0)
    rt.add_argument("--synthetic-users", type=int, default=5000)
    rt.add_argument("--synthetic-items", type=int, default=2000)
    a = ap.parse_args(argv)
    root = (a.artifacts or artifacts_dir()).resolve()
    registry = Registry(root)
    try:
        events = _events(a)
        version = registry.resolve(a.model_version)
        if a.write_reference:
            vd = VersionData(registry, version)
            ref = build_reference(vd, window(events, a.now_ms or int(time.time() * 1000), a.window_minutes)
                                  if events is not None else None)
            _write_json(reference_path(registry, version), ref)
            print(f"wrote {reference_path(registry, version)} ({ref['source']})")
        elif events is not None:
            recent = window(events, a.now_ms or int(time.time() * 1000), a.window_minutes)
            result = check(registry, version, recent, psi_threshold=a.psi_threshold,
                           ks_threshold=a.ks_threshold, min_events=a.min_events)
            if result.detected:
                result.request = write_request(root, result, a.psi_threshold)
            metrics_file = a.metrics_file or root / "drift" / "drift.prom"
            write_metrics(metrics_file, result, len(pending_requests(root)))
            _write_json(root / "drift" / version / "drift_report.json", result.to_dict())
            top = sorted(result.features, key=lambda f: -f.psi)[:5]
            print(f"drift {version}: {result.n_events} events, max PSI {result.max_psi:.3f}, detected "
                  f"{result.detected}"
                  + ("" if result.enough_data else f" (fewer than {a.min_events} events)")
                  + f"; top: {', '.join(f'{f.feature}={f.psi:.3f}' for f in top)}"
                  + (f"; retrain request {result.request}" if result.request else ""))
        elif not a.retrain:
            ap.error("give --events-file or --bootstrap (a check), --write-reference, or --retrain")
        if a.retrain:
            from cascade_pipelines.train import TrainParams

            params = TrainParams(
                dataset=a.dataset, epochs=a.epochs, ranker_epochs=a.ranker_epochs, seed=a.seed,
                synthetic={"n_users": a.synthetic_users, "n_items": a.synthetic_items, "seed": a.seed}
                if a.dataset == "synthetic" else {},
            )
            done = retrain(root, params, metric=a.gate_metric, min_improvement=a.min_improvement,
                           force=a.force)
            if not done:
                print("retrain: no pending retrain request (use --force to retrain anyway)")
            for d in done:
                r = d["result"]
                print(f"retrain: {r['outcome']} candidate {r['candidate']} "
                      f"(current {r['current']}): {r['reason']}")
    except (CascadeError, ValueError, OSError, TimeoutError) as e:
        print(f"drift: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
