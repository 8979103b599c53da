from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cascade_pipelines.ranker import (ListwiseData, RankerConfig, RankerMLP, export_onnx, listwise_loss,
                                      torch_scores, train_ranker)


def _toy_lists(n_users: int = 60, n_cand: int = 30, n_feat: int = 12, seed: int = 0) -> ListwiseData:
    """Positives are the candidates with the largest feature-0 + feature-3 signal."""
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for _ in range(n_users):
        x = rng.standard_normal((n_cand, n_feat)).astype(np.float32) * 2 + 1
        y = np.zeros(n_cand, np.float32)
        y[np.argsort(-(x[:, 0] + x[:, 3]))[:3]] = 1
        feats.append(x)
        labels.append(y)
    return ListwiseData(feats, labels, [3] * n_users)


def test_ranker_learns_a_ranking_signal() -> None:
    data = _toy_lists()
    model, info = train_ranker(data, RankerConfig(epochs=20, hidden=(32,), lr=1e-2, batch_users=8, patience=20), log=lambda m: None)
    assert info["holdout_ndcg@10"] > 0.6  # random ordering scores ~0.3 here


def test_onnx_parity_and_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 46
    x_train = rng.standard_normal((500, n)).astype(np.float32) * 3 + 2
    model = RankerMLP(n, (128, 64), 0.1, x_train.mean(0), x_train.std(0))
    path = tmp_path / "ranker.onnx"
    export_onnx(model, n, path)
    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.type, out.name, out.type) == ("features", "tensor(float)", "score", "tensor(float)")
    assert inp.shape[1] == n and not isinstance(inp.shape[0], int) and len(out.shape) == 1
    for rows in (1, 7, 1000):
        x = rng.standard_normal((rows, n)).astype(np.float32) * 3
        got = sess.run(None, {"features": x})[0]
        assert got.shape == (rows,) and got.dtype == np.float32
        assert np.max(np.abs(got - torch_scores(model, x))) < 1e-4


def test_listwise_loss_prefers_positive_on_top() -> None:
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    good = listwise_loss(torch.tensor([[3.0, 0.0, 0.0]]), labels, mask)
    bad = listwise_loss(torch.tensor([[0.0, 3.0, 0.0]]), labels, mask)
    assert good < bad
    # padded entries never receive probability mass
    padded = listwise_loss(torch.tensor([[3.0, 0.0, 100.0]]), labels, torch.tensor([[True, True, False]]))
    assert padded == pytest.approx(float(listwise_loss(torch.tensor([[3.0, 0.0]]), labels[:, :2],
                                                       mask[:, :2])))
