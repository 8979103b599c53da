"""End-to-end training: data -> split -> two-tower -> ANN -> ranker -> ONNX -> evaluation -> registry.

    python -m cascade_pipelines.train [--dataset ml-latest-small|ml-100k|synthetic] [--artifacts DIR]
                                      [--epochs N] [--if-missing]

Protocol (no test leakage): the test split is only read by the evaluation. Inside train, a validation
split (same strategy) selects the two-tower epoch and provides the ranker's labels: ranker features,
candidates and the two-tower model all come from the *fit* part, labels from the validation part.
The evaluation then recomputes features/candidates from the whole train split and scores the test
split. The served state (user embeddings, Feast tables, consumed items, popularity) is computed
from all interactions with the same model weights, since both towers are inductive in history.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from cascade_core.features import FeatureLayout
from cascade_core.registry import AnnSpec, ModelManifest, RankerSpec, Registry, artifacts_dir
from cascade_pipelines.data import DATASETS, Dataset, load_dataset


def log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class TrainParams:
    dataset: str = "ml-latest-small"
    epochs: int = 20  # two-tower max epochs (early stopping on validation recall@100)
    ranker_epochs: int = 40
    dim: int = 64
    test_frac: float = 0.2
    ann_k: int = 100
    popular_k: int = 50
    n_random_negatives: int = 20
    ann_m: int = 16
    ann_ef_construction: int = 200
    ann_target_recall: float = 0.95
    refit: bool = True  # retrain the two-tower on the whole train split for the chosen epoch count
    realtime: bool = True  # ranker features from the Kafka real-time views (cascade_pipelines.realtime)
    seed: int = 0
    synthetic: dict = field(default_factory=dict)


def run(params: TrainParams, artifacts: Path, dataset: Dataset | None = None) -> str:
    """Train everything, write a registry version, move LATEST; returns the version id."""
    import torch

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return _run(params, artifacts, dataset)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _run(params: TrainParams, artifacts: Path, dataset: Dataset | None) -> str:
    import torch

    from cascade_pipelines import ann as ann_mod
    from cascade_pipelines.candidates import Consumed
    from cascade_pipelines.evaluate import EvalInputs, evaluate, render_table
    from cascade_pipelines.export import git_commit, version_id, write_version
    from cascade_pipelines.featurize import consumed_csr, item_vectors, popularity, user_vectors
    from cascade_pipelines.ranker import RankerConfig, export_onnx, train_ranker
    from cascade_pipelines.ranking_data import PointInTime, listwise_data, truth_sets, user_candidates
    from cascade_pipelines.split import temporal_split, validation_split
    from cascade_pipelines.two_tower import (History, TwoTower, TwoTowerConfig, item_embeddings, train_two_tower,
                                             user_embeddings)

    t_start = time.perf_counter()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)  # bit-identical reruns (multi-threaded CPU grads otherwise drift)
    torch.manual_seed(params.seed)
    np.random.seed(params.seed)

    ds = dataset if dataset is not None else load_dataset(params.dataset, **params.synthetic)
    fp = ds.fingerprint()
    log(f"dataset {ds.name}: {ds.n_users:,} users, {ds.n_items:,} items, "
        f"{len(ds.interactions):,} interactions (fingerprint {fp[:12]})")
    layout = FeatureLayout(ds.categories(), realtime=params.realtime)
    genre_mat = ds.genre_matrix(layout.categories)
    rt_history = None
    if params.realtime:
        from cascade_pipelines.realtime import RealtimeHistory, interaction_events

        t0 = time.perf_counter()
        events = interaction_events(ds.interactions)
        catalog = dict(zip(ds.items["item_id"].astype(str), ds.items["category"].astype(str)))
        rt_history = RealtimeHistory.from_events(events, catalog)
        log(f"real-time features: {len(events):,} replayed events -> {len(rt_history.users.as_of):,} user / "
            f"{len(rt_history.items.as_of):,} item offline rows (cascade_stream.features.compute_features, "
            f"{time.perf_counter() - t0:.1f}s)")

    split = temporal_split(ds.interactions, params.test_frac)
    val = validation_split(split.train, split, params.test_frac)
    log(f"split: {split.description}; train {len(split.train):,} / test {len(split.test):,}; "
        f"validation carved from train: fit {len(val.train):,} / val {len(val.test):,}")

    def codes(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return df["user_id"].cat.codes.to_numpy(np.int64), df["item_id"].cat.codes.to_numpy(np.int64)

    def point_in_time(history: pd.DataFrame, labels: pd.DataFrame | None = None) -> PointInTime:
        indptr, indices = consumed_csr(history, ds.n_users)
        as_of = int(history["timestamp"].max())
        realtime = None
        if rt_history is not None and labels is not None:
            from cascade_pipelines.realtime import RealtimeAt, first_label_times

            # Each user's real-time features as of (strictly before) its first label interaction.
            realtime = RealtimeAt(layout, rt_history, ds.users["user_id"].astype(str).to_numpy(),
                                  ds.items["item_id"].astype(str).to_numpy(), first_label_times(labels))
        return PointInTime(
            user_vecs=user_vectors(history, ds.n_users, genre_mat, layout, as_of),
            item_vecs=item_vectors(history, ds.items, genre_mat, layout),
            consumed=Consumed(indptr, indices),
            popular_order=np.argsort(-popularity(history), kind="stable"),
            realtime=realtime,
        )

    # -- two-tower on the fit part, epoch chosen on validation recall@100 --------------------------
    fit_u, fit_i = codes(val.train)
    fit_hist = History(fit_u, fit_i, ds.n_users)
    fit_pit = point_in_time(val.train, val.test)
    val_users = val.eval_users()
    val_truth = truth_sets(*codes(val.test))

    def val_recall(model: TwoTower) -> float:
        from cascade_pipelines.candidates import ann_topk

        ue = user_embeddings(model, fit_hist, val_users)
        ie = item_embeddings(model, ds.n_items)
        lists = ann_topk(ue, ie, val_users, fit_pit.consumed, 100)
        return float(np.mean([len(val_truth[int(u)] & set(lst.tolist())) / len(val_truth[int(u)])
                              for u, (lst, _) in zip(val_users, lists)]))

    t0 = time.perf_counter()
    tt_cfg = TwoTowerConfig(dim=params.dim, epochs=params.epochs, seed=params.seed)
    model, tt_info = train_two_tower(fit_u, fit_i, ds.n_users, genre_mat, tt_cfg, validate=val_recall, log=log)
    tt_seconds = time.perf_counter() - t0
    log(f"two-tower: best epoch {tt_info['best_epoch']} val recall@100 {tt_info['best_val_recall@100']:.4f} "
        f"({tt_seconds:.1f}s)")
    item_emb = item_embeddings(model, ds.n_items)

    # -- ranker: candidates/features from the fit part, labels = validation interactions ---------
    t0 = time.perf_counter()
    fit_user_emb = user_embeddings(model, fit_hist, val_users)
    cands = user_candidates(fit_pit, fit_user_emb, item_emb, val_users, params.ann_k, params.popular_k,
                            n_random=params.n_random_negatives, seed=params.seed)
    rdata = listwise_data(layout, fit_pit, val_users, cands, val_truth)
    feature_defaults = rdata.stacked().mean(axis=0)
    # Real-time columns default to their "no events" value (zeros), what serving uses for users and
    # items without a real-time row; the other columns to training means.
    feature_defaults[layout.rt_offset:] = 0.0
    ranker, rk_info = train_ranker(rdata, RankerConfig(epochs=params.ranker_epochs, seed=params.seed), log=log)
    rk_seconds = time.perf_counter() - t0
    log(f"ranker: best epoch {rk_info['best_epoch']} holdout ndcg@10 {rk_info['holdout_ndcg@10']:.4f} "
        f"({rk_seconds:.1f}s, {sum(len(y) for y in rdata.labels):,} rows)")

    if params.refit:
        t0 = time.perf_counter()
        tr_u, tr_i = codes(split.train)
        refit_cfg = TwoTowerConfig(dim=params.dim, epochs=tt_info["best_epoch"], seed=params.seed)
        model, _ = train_two_tower(tr_u, tr_i, ds.n_users, genre_mat, refit_cfg, log=log)
        item_emb = item_embeddings(model, ds.n_items)
        tt_seconds += time.perf_counter() - t0
        log(f"two-tower: refit on the whole train split for {refit_cfg.epochs} epochs "
            f"({time.perf_counter() - t0:.1f}s)")

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "ranker.onnx"
        export_onnx(ranker, layout.dim, onnx_path)

        # -- served state from all interactions; ANN index + ef tuned on real user queries -------
        all_u, all_i = codes(ds.interactions)
        full_hist = History(all_u, all_i, ds.n_users)
        served_users = np.arange(ds.n_users)
        user_emb = user_embeddings(model, full_hist, served_users)
        t0 = time.perf_counter()
        index = ann_mod.build_index(item_emb, params.ann_m, params.ann_ef_construction, seed=params.seed + 100)
        rng = np.random.default_rng(params.seed)
        sample = rng.choice(ds.n_users, size=min(2000, ds.n_users), replace=False)
        ef, ann_recall = ann_mod.tune_ef(index, user_emb[sample], item_emb, k=params.ann_k,
                                         target=params.ann_target_recall)
        log(f"ann: hnswlib M={params.ann_m} ef_construction={params.ann_ef_construction} -> ef_search={ef} "
            f"recall@{params.ann_k} vs exact {ann_recall:.4f} ({time.perf_counter() - t0:.1f}s)")

        # -- offline evaluation on the test split -----------------------------------------------
        t0 = time.perf_counter()
        train_u, train_i = codes(split.train)
        train_pit = point_in_time(split.train, split.test)
        eval_users = split.eval_users()
        eval_user_emb = user_embeddings(model, History(train_u, train_i, ds.n_users), eval_users)
        metrics = evaluate(EvalInputs(
            layout=layout, pit=train_pit, train=split.train, eval_users=eval_users,
            truth=truth_sets(*codes(split.test)), user_emb=eval_user_emb, item_emb=item_emb, index=index,
            ef_search=ef, ann_k=params.ann_k, popular_k=params.popular_k, ranker_path=onnx_path,
        ))
        log(f"evaluation ({time.perf_counter() - t0:.1f}s): pipeline ndcg@10 {metrics['pipeline']['ndcg@10']:.4f}"
            f" vs popularity {metrics['popularity']['ndcg@10']:.4f} "
            f"({metrics['pipeline_ndcg@10_lift_vs_popularity']:+.1%})")

        now = datetime.now(timezone.utc).replace(microsecond=0)
        vid = version_id(now, fp)
        metrics.update({
            "split": split.description,
            "ann_recall@100_vs_exact": ann_recall,
            "two_tower": {k: v for k, v in tt_info.items() if k != "epochs"},
            "ranker": {k: v for k, v in rk_info.items() if k != "epochs"},
            "meets_ndcg_lift_requirement": bool(metrics["pipeline_ndcg@10_lift_vs_popularity"] >= 0.10),
        })
        eval_md = render_table(metrics, {
            "dataset": ds.name, "version_id": vid, "split": split.description, "n_test": len(split.test),
            "ann_k": params.ann_k, "popular_k": params.popular_k, "ef_search": ef, "ann_recall": ann_recall,
        })
        full_pit = point_in_time(ds.interactions)
        manifest = ModelManifest(
            version_id=vid, created_at=now, git_commit=git_commit(),
            data_fingerprint=fp, dataset=ds.name, n_users=ds.n_users, n_items=ds.n_items,
            embedding_dim=params.dim,
            ann=AnnSpec(dim=params.dim, m=params.ann_m, ef_construction=params.ann_ef_construction, ef_search=ef),
            ranker=RankerSpec(feature_names=layout.names, feature_defaults=[float(x) for x in feature_defaults]),
            metrics=metrics,
            params={**asdict(params), "split_strategy": split.strategy, "two_tower": asdict(tt_cfg),
                    "ranker": asdict(RankerConfig(epochs=params.ranker_epochs, seed=params.seed)),
                    "train_seconds": round(time.perf_counter() - t_start, 1)},
        )
        registry = Registry(artifacts)
        path = write_version(
            registry, manifest, items=ds.items, popularity=popularity(ds.interactions), item_emb=item_emb,
            user_ids=ds.users["user_id"].astype(str).tolist(), user_emb=user_emb, index=index,
            consumed=(full_pit.consumed.indptr, full_pit.consumed.indices), ranker_onnx=onnx_path,
            user_features=full_pit.user_vecs, item_features=full_pit.item_vecs, eval_md=eval_md,
        )
    # Reference distributions for drift detection, stored with the version.
    from cascade_pipelines.drift import ensure_reference

    ensure_reference(registry, vid)
    # MLflow run + model version (no-op unless CASCADE_MLFLOW_TRACKING_URI is set; never fails training).
    from cascade_modelops.mlflow_sync import record_version

    record_version(path)
    print(eval_md)
    log(f"wrote {path} and moved LATEST ({time.perf_counter() - t_start:.1f}s total)")
    return vid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cascade_pipelines.train", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="ml-latest-small", choices=DATASETS)
    ap.add_argument("--artifacts", type=Path, default=None,
                    help="artifacts root holding registry/ (default: $CASCADE_ARTIFACTS_DIR or ./artifacts)")
    ap.add_argument("--epochs", type=int, default=TrainParams.epochs, help="two-tower max epochs")
    ap.add_argument("--ranker-epochs", type=int, default=TrainParams.ranker_epochs)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic-users", type=int, default=5000)
    ap.add_argument("--synthetic-items", type=int, default=2000)
    ap.add_argument("--if-missing", action="store_true", help="exit 0 at once when registry/LATEST exists")
    ap.add_argument("--no-realtime", action="store_true",
                    help="train the ranker without the real-time (Kafka) features (the previous layout)")
    a = ap.parse_args(argv)
    root = (a.artifacts or artifacts_dir()).resolve()
    if a.if_missing and (root / "registry" / "LATEST").is_file():
        log(f"{root / 'registry' / 'LATEST'} exists; nothing to do (--if-missing)")
        return 0
    if a.epochs < 1:
        ap.error("--epochs must be >= 1")
    params = TrainParams(dataset=a.dataset, epochs=a.epochs, ranker_epochs=a.ranker_epochs, seed=a.seed,
                         realtime=not a.no_realtime,
                         synthetic={"n_users": a.synthetic_users, "n_items": a.synthetic_items, "seed": a.seed}
                         if a.dataset == "synthetic" else {})
    run(params, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
