"""Cascade model operations: which ranker version serves, how that changes, and who changed it.

* :mod:`cascade_modelops.routing` — the routing document the ranking service reads;
* :mod:`cascade_modelops.promotion` — pure decisions (command + current state -> new state);
* :mod:`cascade_modelops.appliers` — where the state lives: a local file or a Kubernetes ConfigMap;
* :mod:`cascade_modelops.audit` — the JSON-lines audit log;
* :mod:`cascade_modelops.mlflow_sync` — training runs and model-version aliases in MLflow;
* :mod:`cascade_modelops.ops` — the use cases the ``cascade models`` CLI and ``kubectl cascade`` run.
"""
