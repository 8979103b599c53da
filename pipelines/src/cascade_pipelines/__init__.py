"""cascade-pipelines: data, training, ONNX export, offline evaluation and the registry writer.

Modules: ``data`` (MovieLens loaders, Dataset), ``synthetic`` (seeded generator), ``split`` (temporal
splits), ``featurize`` (FeatureLayout vectors), ``two_tower`` (retrieval model), ``ann`` (hnswlib index +
exact oracle), ``ann_bench``, ``candidates`` / ``ranking_data`` (serving-equivalent candidate lists),
``ranker`` (MLP + ONNX export), ``metrics``, ``evaluate``, ``export`` (registry writer), ``train`` (CLI);
plus ``analysis``, ``drift``, ``batch_predict``, ``optimize`` and ``triton_repo``.
"""
