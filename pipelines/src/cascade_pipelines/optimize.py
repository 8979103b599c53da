"""Optimized ranker variants (FP16, INT8) with a quality/latency table, plus GPU (TensorRT) configs.

    python -m cascade_pipelines.optimize --version latest [--artifacts DIR] [--eval-users 1000]

Writes ``<registry version>/optimized/``::

    ranker.fp16.onnx   float16 weights/compute, float32 inputs/outputs (onnxruntime's float16 converter)
    ranker.int8.onnx   the better of static INT8 (QDQ on the Gemms, calibrated on served-like rows
                       from the version's Feast tables) and dynamic INT8 (weights quantized,
                       activations at run time): within the 1% NDCG budget the faster one, else the
                       one that loses less
    report.md          the table below;  variants.json: the same numbers + the default decision
    trt_ep.json        onnxruntime TensorRT execution-provider options for GPU nodes (UNTESTED here)

Quality: NDCG@10 of each variant on the same ranked candidate lists, delta vs FP32. When the
version's dataset can be rebuilt (its fingerprint matches), the lists are the test split's, built as
the training evaluation builds them (train-split features and consumed items, ANN top-K ∪ popular,
truth = test interactions) except that user embeddings are the registry's served ones (the training
run keeps no two-tower weights): absolute NDCG is therefore optimistic, the *delta* between variants
— same lists, same features, only the ranker differs — is exact. Otherwise (fixture registries) a
proxy protocol is used and named in the table. Latency: one onnxruntime session per variant, one
intra-op thread (the serving setting), 100-candidate requests of real rows, p50/p99 over
``--bench-iters`` calls after warm-up; throughput = candidates scored per second on that one thread.
INT8 is offered as the default only if its NDCG@10 is within 1% (relative) of FP32 *and* it is
faster than FP32 at p50; otherwise FP32 stays the default.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cascade_core.features import FeatureLayout
from cascade_core.registry import Registry

NDCG_TOLERANCE = 0.01  # relative NDCG@10 loss that INT8 may cost and still be offered as default
BENCH_ROWS = 100


# ------------------------------------------------------------------------------------------------
# Feature rows from the registry
# ------------------------------------------------------------------------------------------------
@dataclass
class ServedFeatures:
    user_vecs: np.ndarray  # [n_users, user_dim], rows = user_ids.json order
    item_vecs: np.ndarray  # [n_items, item_dim], rows = items.parquet order
    user_emb: np.ndarray
    item_emb: np.ndarray


def served_features(registry: Registry, version: str) -> ServedFeatures:
    """The version's Feast tables aligned to its embedding rows (by id)."""
    import pyarrow.parquet as pq

    m = registry.manifest(version)
    d = registry.path(version)
    feast = d / m.files.feast_dir
    if not feast.is_dir():
        raise FileNotFoundError(f"{feast} missing: the registry version has no offline feature tables")
    user_ids = json.loads((d / m.files.user_ids).read_text())
    item_ids = pq.read_table(d / m.files.items, columns=["item_id"]).column("item_id").to_pylist()

    def table(name: str, key: str, vec: str, ids: list[str]) -> np.ndarray:
        t = pq.read_table(feast / name, columns=[key, vec])
        pos = {k: i for i, k in enumerate(t.column(key).to_pylist())}
        mat = np.asarray(t.column(vec).to_pylist(), dtype=np.float32)
        return mat[[pos[k] for k in ids]]

    return ServedFeatures(
        user_vecs=table("user_features.parquet", "user_id", "user_vec", user_ids),
        item_vecs=table("item_features.parquet", "item_id", "item_vec", item_ids),
        user_emb=np.load(d / m.files.user_embeddings),
        item_emb=np.load(d / m.files.item_embeddings),
    )


def served_lists(registry: Registry, version: str, users: np.ndarray, ann_k: int = 100, popular_k: int = 50
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per user, what serving ranks: exact top-``ann_k`` items by the served embeddings ∪ the
    ``popular_k`` most popular items (retrieval score 0 unless also retrieved), as (items, rows)."""
    m = registry.manifest(version)
    layout = FeatureLayout.from_names(m.ranker.feature_names)
    f = served_features(registry, version)
    popular = np.argsort(-f.item_vecs[:, 0], kind="stable")[:popular_k]  # item_log_popularity
    out = []
    for u in users:
        s = f.item_emb @ f.user_emb[u]
        top = np.argsort(-s, kind="stable")[:ann_k]
        items = np.concatenate([top, popular[~np.isin(popular, top)]])
        ret = np.where(np.isin(items, top), s[items], 0.0).astype(np.float32)
        out.append((items, layout.assemble(f.user_vecs[u], f.item_vecs[items], ret)))
    return out


def feature_rows(registry: Registry, version: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` ranker rows distributed like served traffic: candidate lists of random users built from
    the version's Feast tables (:func:`served_lists`). Versions without Feast tables (test fixtures)
    get seeded N(0, 1) rows."""
    m = registry.manifest(version)
    layout = FeatureLayout.from_names(m.ranker.feature_names)
    rng = np.random.default_rng(seed)
    d = registry.path(version)
    if not (d / m.files.feast_dir).is_dir():
        return rng.normal(0, 1, (n, layout.dim)).astype(np.float32)
    n_users = len(json.loads((d / m.files.user_ids).read_text()))
    users = rng.permutation(n_users)[: max(1, min(n_users, -(-n // 100)))]
    rows = np.concatenate([x for _, x in served_lists(registry, version, users)])
    rows = rows[rng.permutation(len(rows))]
    return np.ascontiguousarray(np.resize(rows, (n, layout.dim)), dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# Ranked candidate lists for NDCG@10
# ------------------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    lists: list[tuple[np.ndarray, np.ndarray]]  # per user: (item rows, features [n_c, F])
    truths: list[set[int]]
    protocol: str


def _test_split_eval_set(registry: Registry, version: str, max_users: int, seed: int) -> EvalSet:
    from cascade_pipelines.ann import load_index
    from cascade_pipelines.candidates import Consumed
    from cascade_pipelines.data import load_dataset
    from cascade_pipelines.featurize import consumed_csr, item_vectors, popularity, user_vectors
    from cascade_pipelines.ranking_data import PointInTime, truth_sets, user_candidates
    from cascade_pipelines.split import temporal_split

    m = registry.manifest(version)
    d = registry.path(version)
    p = m.params
    ds = load_dataset(m.dataset, **(p.get("synthetic") or {}))
    user_ids = json.loads((d / m.files.user_ids).read_text())
    if ds.fingerprint() != m.data_fingerprint or ds.users["user_id"].astype(str).tolist() != user_ids:
        raise ValueError(f"dataset {m.dataset!r} no longer matches version {version}")
    layout = FeatureLayout.from_names(m.ranker.feature_names)
    genre_mat = ds.genre_matrix(layout.categories)
    split = temporal_split(ds.interactions, p.get("test_frac", 0.2), strategy=p.get("split_strategy", "auto"))
    hist = split.train
    indptr, indices = consumed_csr(hist, ds.n_users)
    pit = PointInTime(
        user_vecs=user_vectors(hist, ds.n_users, genre_mat, layout, int(hist["timestamp"].max())),
        item_vecs=item_vectors(hist, ds.items, genre_mat, layout),
        consumed=Consumed(indptr, indices),
        popular_order=np.argsort(-popularity(hist), kind="stable"),
    )
    users = split.eval_users()
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    truth = truth_sets(split.test["user_id"].cat.codes.to_numpy(np.int64),
                       split.test["item_id"].cat.codes.to_numpy(np.int64))
    user_emb, item_emb = np.load(d / m.files.user_embeddings), np.load(d / m.files.item_embeddings)
    index = load_index(d / m.files.ann_index, m.ann.dim, m.ann.ef_search)
    cands = user_candidates(pit, user_emb[users], item_emb, users, p.get("ann_k", 100), p.get("popular_k", 50),
                            index=index, ef_search=m.ann.ef_search)
    lists = [(c.items, layout.assemble(pit.user_vecs[int(u)], pit.item_vecs[c.items], c.scores))
             for u, c in zip(users, cands, strict=True)]
    return EvalSet(lists, [truth[int(u)] for u in users],
                   f"test split of {m.dataset} ({split.description}), {len(users)} users, "
                   f"ANN top-{p.get('ann_k', 100)} ∪ popular top-{p.get('popular_k', 50)}")


def _proxy_eval_set(registry: Registry, version: str, max_users: int, seed: int) -> EvalSet:
    """No rebuildable dataset: served candidate lists (:func:`served_lists`) of sampled users,
    relevance = the user's consumed items (kept in the lists). Compares variants only."""
    m = registry.manifest(version)
    d = registry.path(version)
    z = np.load(d / m.files.consumed)
    indptr, indices = z["indptr"], z["indices"]
    n_users = len(indptr) - 1
    users = np.sort(np.random.default_rng(seed).permutation(n_users)[:max_users])
    truths = [set(indices[indptr[u]:indptr[u + 1]].tolist()) for u in users]
    return EvalSet(served_lists(registry, version, users), truths,
                   f"PROXY (no rebuildable test split): {len(users)} users, served top-100 by embeddings ∪ "
                   "popular top-50, relevance = consumed items")


def eval_set(registry: Registry, version: str, max_users: int = 1000, seed: int = 0) -> EvalSet:
    try:
        return _test_split_eval_set(registry, version, max_users, seed)
    except (ValueError, KeyError, FileNotFoundError, ImportError, TypeError) as e:
        print(f"[optimize] test split unavailable ({e}); using the proxy protocol")
        return _proxy_eval_set(registry, version, max_users, seed)


# ------------------------------------------------------------------------------------------------
# Variants
# ------------------------------------------------------------------------------------------------
def export_fp16(src: Path, dst: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def export_int8_dynamic(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return dst


def export_int8_static(src: Path, dst: Path, calibration: np.ndarray, batch: int = 100) -> Path:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.batches = iter([{name: calibration[i:i + batch]} for i in range(0, len(calibration), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    import onnxruntime as ort

    name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(dst), Reader(name), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        # only the matrix products: quantizing the raw-feature standardisation (Sub/Mul)
                        # squeezes features of very different ranges into one per-tensor scale
                        op_types_to_quantize=["Gemm", "MatMul"])
    return dst


def session(path: Path):  # noqa: ANN201 - onnxruntime.InferenceSession
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


@dataclass
class VariantResult:
    variant: str
    file: str
    size_kb: float
    ndcg10: float
    ndcg10_delta: float  # variant - FP32
    top10_agreement: float  # mean |top-10 ∩ FP32 top-10| / 10
    max_abs_diff: float  # vs FP32 scores on the eval rows
    p50_ms: float
    p99_ms: float
    candidates_per_s: float


def quality(name: str, path: Path, es: EvalSet, ref: list[np.ndarray] | None) -> tuple[
        VariantResult, list[np.ndarray]]:
    """NDCG@10 and fidelity to FP32 (``ref`` scores) of one variant; latency is filled by :func:`bench`."""
    from cascade_pipelines.metrics import mean_metrics

    sess = session(path)
    inp, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    scores = [np.asarray(sess.run([out], {inp: x})[0], np.float32).reshape(-1) for _, x in es.lists]
    ranked = [items[np.argsort(-s, kind="stable")] for (items, _), s in zip(es.lists, scores, strict=True)]
    ndcg = mean_metrics(ranked, es.truths, {"ndcg@10": 10})["ndcg@10"]
    if ref is None:
        agree, diff = 1.0, 0.0
    else:
        def top10(s: np.ndarray) -> set[int]:
            return set(np.argsort(-s, kind="stable")[:10].tolist())

        agree = float(np.mean([len(top10(a) & top10(b)) / max(1, min(10, len(a)))
                               for a, b in zip(ref, scores, strict=True)]))
        diff = float(max(np.max(np.abs(a - b)) for a, b in zip(ref, scores, strict=True)))
    res = VariantResult(name, path.name, path.stat().st_size / 1024, float(ndcg), 0.0, agree, diff, 0.0, 0.0, 0.0)
    return res, scores


def bench(variants: dict[str, Path], x: np.ndarray, iters: int, seed: int = 0
          ) -> dict[str, tuple[float, float, float]]:
    """(p50 ms, p99 ms, candidates/s) per variant. Calls are interleaved round-robin in a shuffled
    order per round, so every variant sees the same background load on a shared machine."""
    sessions = {}
    for name, path in variants.items():
        sess = session(path)
        sessions[name] = (sess, sess.get_inputs()[0].name, sess.get_outputs()[0].name)
    for sess, inp, out in sessions.values():
        for _ in range(min(200, iters)):
            sess.run([out], {inp: x})
    names = list(sessions)
    lat = {n: np.empty(iters) for n in names}
    rng = np.random.default_rng(seed)
    for k in range(iters):
        for n in rng.permutation(names):
            sess, inp, out = sessions[n]
            t = time.perf_counter()
            sess.run([out], {inp: x})
            lat[n][k] = time.perf_counter() - t
    return {n: (float(np.percentile(v, 50) * 1e3), float(np.percentile(v, 99) * 1e3),
                float(len(x) / v.mean())) for n, v in lat.items()}


def relative_loss(r: VariantResult, base: VariantResult) -> float:
    """NDCG@10 lost relative to FP32 (negative = gained)."""
    return -r.ndcg10_delta / base.ndcg10 if base.ndcg10 > 0 else float("inf")


def int8_preference(r: VariantResult, base: VariantResult) -> tuple:
    """Sort key for "the better INT8": within the 1% budget beats outside it; within it the faster
    p50 wins (NDCG deltas that small are evaluation noise); outside it the smaller loss wins."""
    loss = relative_loss(r, base)
    return (0, r.p50_ms) if loss <= NDCG_TOLERANCE else (1, loss)


def trt_ep_options(n_features: int, input_name: str, cache_dir: str = "/var/cache/cascade/trt",
                   max_batch: int = 4096, opt_batch: int = 256) -> dict:
    """onnxruntime TensorRT EP settings for GPU nodes (FP16, engine cache, one dynamic-N profile)."""
    return {
        "untested": "written without a GPU; validate on a GPU node (see docs/triton.md)",
        "providers": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        "TensorrtExecutionProvider": {
            "trt_fp16_enable": True,
            "trt_int8_enable": False,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache_dir,
            "trt_timing_cache_enable": True,
            "trt_max_workspace_size": 1 << 30,
            "trt_profile_min_shapes": f"{input_name}:1x{n_features}",
            "trt_profile_opt_shapes": f"{input_name}:{opt_batch}x{n_features}",
            "trt_profile_max_shapes": f"{input_name}:{max_batch}x{n_features}",
        },
        "CUDAExecutionProvider": {"device_id": 0},
    }


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------
def run(registry: Registry, version: str | None = "latest", out: Path | None = None, eval_users: int = 1000,
        calib_rows: int = 5000, bench_iters: int = 2000, seed: int = 0) -> dict:
    m = registry.manifest(version)
    vid = m.version_id
    fp32 = registry.file(vid, "ranker")
    out = out or registry.path(vid) / "optimized"
    out.mkdir(parents=True, exist_ok=True)
    es = eval_set(registry, vid, eval_users, seed)
    calibration = feature_rows(registry, vid, calib_rows, seed=seed + 1)  # served-like rows, not eval lists

    base, ref = quality("fp32", fp32, es, None)
    fp16, _ = quality("fp16", export_fp16(fp32, out / "ranker.fp16.onnx"), es, ref)
    results = [base, fp16]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"fp32": fp32, "fp16": out / "ranker.fp16.onnx",
                 "int8-static": export_int8_static(fp32, Path(tmp) / "int8-static.onnx", calibration),
                 "int8-dynamic": export_int8_dynamic(fp32, Path(tmp) / "int8-dynamic.onnx")}
        results += [quality(n, paths[n], es, ref)[0] for n in ("int8-static", "int8-dynamic")]
        rows = np.concatenate([x for _, x in es.lists])
        x100 = np.ascontiguousarray(np.resize(rows, (BENCH_ROWS, rows.shape[1])), dtype=np.float32)
        timings = bench(paths, x100, bench_iters, seed)
        for r in results:
            r.ndcg10_delta = r.ndcg10 - base.ndcg10
            r.p50_ms, r.p99_ms, r.candidates_per_s = timings[r.variant]
        best = min(results[2:], key=lambda r: int8_preference(r, base))
        (out / "ranker.int8.onnx").write_bytes(paths[best.variant].read_bytes())
    rel_loss = relative_loss(best, base)
    within = rel_loss <= NDCG_TOLERANCE
    faster = best.p50_ms < base.p50_ms
    default = "int8" if within and faster else "fp32"
    why = "faster within the NDCG budget" if within else "smaller NDCG loss"
    decision = (f"INT8 kept: {best.variant} ({why}). Relative NDCG@10 change {-rel_loss:+.2%} — "
                f"{'within' if within else 'OUTSIDE'} the 1% budget; p50 {best.p50_ms:.3f} ms vs FP32 "
                f"{base.p50_ms:.3f} ms ({'faster' if faster else 'not faster'}). Default variant: **{default}**.")
    n = len(m.ranker.feature_names)
    (out / "trt_ep.json").write_text(json.dumps(trt_ep_options(n, m.ranker.input_name), indent=2))
    report = {"version_id": vid, "protocol": es.protocol, "results": [asdict(r) for r in results],
              "int8_kept": best.variant, "default_variant": default, "decision": decision,
              "bench": {"rows_per_request": BENCH_ROWS, "iters": bench_iters, "threads": 1}}
    (out / "variants.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(render(report))
    return report


def render(report: dict) -> str:
    lines = [
        f"# Ranker variants — {report['version_id']}",
        "",
        f"- NDCG@10 lists: {report['protocol']}",
        f"- latency: CPU, onnxruntime, {report['bench']['threads']} intra-op thread, "
        f"{report['bench']['rows_per_request']} candidates per call, {report['bench']['iters']} calls",
        "",
        "| variant | size KB | NDCG@10 | Δ vs FP32 | top-10 agreement | max abs Δscore | p50 ms | p99 ms "
        "| candidates/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        kept = " (kept)" if r["variant"] == report["int8_kept"] else ""
        lines.append(
            f"| {r['variant']}{kept} | {r['size_kb']:.1f} | {r['ndcg10']:.4f} | {r['ndcg10_delta']:+.4f} | "
            f"{r['top10_agreement']:.3f} | {r['max_abs_diff']:.2e} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
            f"{r['candidates_per_s']:,.0f} |")
    lines += ["", report["decision"], "",
              "GPU: `trt_ep.json` (onnxruntime TensorRT EP, FP16) and `scripts/triton/build_trt_plan.sh` "
              "(TensorRT plan) are shipped UNTESTED — no GPU was available when they were written.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m cascade_pipelines.optimize", description=__doc__.split("\n")[0])
    ap.add_argument("--version", default="latest")
    ap.add_argument("--artifacts", type=Path, help="artifacts root (default $CASCADE_ARTIFACTS_DIR or ./artifacts)")
    ap.add_argument("--out", type=Path, help="output dir (default <version>/optimized)")
    ap.add_argument("--eval-users", type=int, default=1000)
    ap.add_argument("--calib-rows", type=int, default=5000)
    ap.add_argument("--bench-iters", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    report = run(Registry(a.artifacts), a.version, a.out, a.eval_users, a.calib_rows, a.bench_iters, a.seed)
    print(render(report))


if __name__ == "__main__":
    main()
