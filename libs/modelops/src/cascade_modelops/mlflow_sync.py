"""Training runs and ranker versions in MLflow (tracking + model registry with aliases).

Talks to an MLflow tracking server over its REST API (``/api/2.0/mlflow/...``) with ``requests``:
the ``mlflow`` package cannot join this project's pinned environment (every release with aliases
caps ``importlib_metadata`` below the pinned 10.x, or pins ``gunicorn<27``), so the server runs
from its own environment (:mod:`cascade_modelops.tracking_server`: SQLite backend in
``$CASCADE_DATA_DIR/mlflow.db``, artifacts in ``$CASCADE_DATA_DIR/mlruns``; in a cluster an MLflow
server backed by PostgreSQL) and this client needs nothing beyond ``requests``.

Configuration: ``CASCADE_MLFLOW_TRACKING_URI`` (``http(s)://host:port``; unset = tracking off, the
local registry stays the only record), ``CASCADE_MLFLOW_EXPERIMENT`` (default ``cascade-training``),
``CASCADE_MLFLOW_MODEL_PREFIX`` (registered model ``<prefix><model>``, default ``cascade-``),
``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` for auth.

Per registry version :func:`record_version` creates (once; re-runs find it by tag) a run holding
params, metrics, data fingerprint, git commit, a pointer to the registry directory and the
manifest as an artifact, then a model version of ``cascade-ranker`` from that run, aliased
``staging``. Promotions move the ``production`` and ``canary`` aliases (:meth:`MlflowTracker.set_aliases`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from cascade_core.registry import ModelManifest, Registry

log = logging.getLogger("cascade.modelops.mlflow")

TRACKING_URI_ENV = "CASCADE_MLFLOW_TRACKING_URI"
VERSION_TAG = "cascade.version"
_KEY_BAD = re.compile(r"[^\w.\- :/]")
MAX_PARAM_VALUE = 6000
BATCH = 100  # MLflow's per-request limit for params and tags


class TrackingError(RuntimeError):
    """MLflow refused or could not be reached; the message names the server and the fix."""


@dataclass(frozen=True)
class RecordedVersion:
    version: str  # registry version id
    model_version: str  # MLflow model version number
    run_id: str
    created: bool  # False when it was already recorded


def mlflow_key(key: str) -> str:
    """MLflow accepts letters, digits, ``_ - . space : /`` in keys (``ndcg@10`` -> ``ndcg_at_10``)."""
    return _KEY_BAD.sub("_", key.replace("@", "_at_"))[:250]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Finite numbers (bools as 0/1) from a nested metrics dict, keys MLflow-safe."""
    out: dict[str, float] = {}
    for k, v in flatten(metrics).items():
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[mlflow_key(k)] = float(v)
    return out


def string_params(params: dict[str, Any]) -> dict[str, str]:
    return {mlflow_key(k): str(v)[:MAX_PARAM_VALUE] for k, v in flatten(params).items()}


class MlflowTracker:
    """A small MLflow REST client covering what Cascade records."""

    def __init__(self, tracking_uri: str, experiment: str = "cascade-training", model_prefix: str = "cascade-",
                 timeout_s: float = 15.0) -> None:
        if not tracking_uri.startswith(("http://", "https://")):
            raise TrackingError(
                f"{TRACKING_URI_ENV}={tracking_uri!r} must be the http(s) URL of an MLflow tracking server "
                "(run one locally with `python -m cascade_modelops.tracking_server serve`)")
        self.base = tracking_uri.rstrip("/")
        self.experiment = experiment
        self.model_prefix = model_prefix
        self.timeout_s = timeout_s
        self.session = requests.Session()
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
            self.session.auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))

    @classmethod
    def from_env(cls) -> "MlflowTracker | None":
        uri = os.environ.get(TRACKING_URI_ENV, "").strip()
        if not uri:
            return None
        return cls(uri, os.environ.get("CASCADE_MLFLOW_EXPERIMENT", "cascade-training"),
                   os.environ.get("CASCADE_MLFLOW_MODEL_PREFIX", "cascade-"))

    def registered_name(self, model: str) -> str:
        return f"{self.model_prefix}{model}"

    # -- transport -----------------------------------------------------------------------------
    def _call(self, method: str, endpoint: str, body: dict[str, Any] | None = None,
              ok_codes: tuple[str, ...] = ()) -> dict[str, Any]:
        url = f"{self.base}/api/2.0/mlflow/{endpoint}"
        try:
            if method == "GET":
                r = self.session.get(url, params=body, timeout=self.timeout_s)
            else:
                r = self.session.request(method, url, json=body, timeout=self.timeout_s)
        except requests.RequestException as e:
            raise TrackingError(f"MLflow at {self.base} unreachable ({type(e).__name__}): start it or fix "
                                f"{TRACKING_URI_ENV}") from None
        try:
            doc = r.json() if r.content else {}
        except ValueError:
            doc = {}
        if r.status_code >= 400:
            code = doc.get("error_code", "")
            if code in ok_codes:
                return {"error_code": code}
            raise TrackingError(f"MLflow {method} {endpoint} -> {r.status_code} {code}: "
                                f"{doc.get('message', r.text[:300])}")
        return doc

    # -- experiments and runs ------------------------------------------------------------------
    def experiment_id(self) -> str:
        doc = self._call("GET", "experiments/get-by-name", {"experiment_name": self.experiment},
                         ok_codes=("RESOURCE_DOES_NOT_EXIST",))
        if "experiment" in doc:
            return doc["experiment"]["experiment_id"]
        return self._call("POST", "experiments/create", {"name": self.experiment})["experiment_id"]

    def _log_run(self, manifest: ModelManifest, version_dir: Path) -> tuple[str, str]:
        """Create the training run of ``manifest``; returns (run_id, artifact_uri)."""
        now_ms = int(time.time() * 1000)
        start_ms = int(manifest.created_at.timestamp() * 1000)
        tags = {
            "mlflow.runName": manifest.version_id,
            "mlflow.source.git.commit": manifest.git_commit,
            VERSION_TAG: manifest.version_id,
            "cascade.dataset": manifest.dataset,
            "cascade.data_fingerprint": manifest.data_fingerprint,
            "cascade.registry_path": str(version_dir.resolve()),
        }
        run = self._call("POST", "runs/create", {
            "experiment_id": self.experiment_id(), "run_name": manifest.version_id, "start_time": start_ms,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        })["run"]["info"]
        run_id = run["run_id"]
        params = {
            **string_params(manifest.params), "dataset": manifest.dataset, "n_users": str(manifest.n_users),
            "n_items": str(manifest.n_items), "embedding_dim": str(manifest.embedding_dim),
            "ranker.n_features": str(len(manifest.ranker.feature_names)),
        }
        items = list(params.items())
        metrics = [{"key": k, "value": v, "timestamp": now_ms, "step": 0}
                   for k, v in numeric_metrics(manifest.metrics).items()]
        for i in range(0, max(len(items), len(metrics), 1), BATCH):
            self._call("POST", "runs/log-batch", {
                "run_id": run_id,
                "params": [{"key": k, "value": v} for k, v in items[i:i + BATCH]],
                "metrics": metrics[i:i + BATCH],
            })
        artifact_uri = run.get("artifact_uri", "")
        self._upload(artifact_uri, version_dir / "manifest.json", "registry/manifest.json")
        self._call("POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": now_ms})
        return run_id, artifact_uri

    def _upload(self, artifact_uri: str, path: Path, rel: str) -> None:
        """PUT a small file through the server's artifact proxy (``mlflow-artifacts:`` runs only)."""
        prefix = "mlflow-artifacts:/"
        if not artifact_uri.startswith(prefix) or not path.is_file():
            return  # other stores (s3, gs): the run's cascade.registry_path tag is the pointer
        dest = artifact_uri[len(prefix):].lstrip("/")
        url = f"{self.base}/api/2.0/mlflow-artifacts/artifacts/{dest}/{rel}"
        try:
            r = self.session.put(url, data=path.read_bytes(), timeout=self.timeout_s)
        except requests.RequestException as e:
            raise TrackingError(f"MLflow artifact upload to {self.base} failed ({type(e).__name__})") from None
        if r.status_code >= 400:
            raise TrackingError(f"MLflow artifact upload {rel} -> {r.status_code}: {r.text[:300]}")

    # -- model registry ------------------------------------------------------------------------
    def model_versions(self, model: str) -> list[dict[str, Any]]:
        name = self.registered_name(model)
        out: list[dict[str, Any]] = []
        token = None
        while True:
            body: dict[str, Any] = {"filter": f"name='{name}'", "max_results": 200}
            if token:
                body["page_token"] = token
            doc = self._call("GET", "model-versions/search", body)
            out.extend(doc.get("model_versions", []))
            token = doc.get("next_page_token")
            if not token:
                return out

    def find_version(self, model: str, version: str) -> dict[str, Any] | None:
        for mv in self.model_versions(model):
            tags = {t["key"]: t.get("value") for t in mv.get("tags", [])}
            if tags.get(VERSION_TAG) == version:
                return mv
        return None

    def aliases(self, model: str) -> dict[str, str]:
        """``alias -> registry version id`` for the registered model (empty when it does not exist)."""
        doc = self._call("GET", "registered-models/get", {"name": self.registered_name(model)},
                         ok_codes=("RESOURCE_DOES_NOT_EXIST",))
        if "registered_model" not in doc:
            return {}
        by_number = {mv["version"]: {t["key"]: t.get("value") for t in mv.get("tags", [])}.get(VERSION_TAG)
                     for mv in self.model_versions(model)}
        return {a["alias"]: by_number.get(a["version"]) or f"mlflow#{a['version']}"
                for a in doc["registered_model"].get("aliases", [])}

    def record_version(self, version_dir: Path | str, model: str = "ranker", alias: str | None = "staging"
                       ) -> RecordedVersion:
        """Record registry version ``version_dir`` once (run + model version); idempotent."""
        version_dir = Path(version_dir)
        manifest = ModelManifest.model_validate_json((version_dir / "manifest.json").read_text())
        existing = self.find_version(model, manifest.version_id)
        if existing is not None:
            return RecordedVersion(manifest.version_id, existing["version"], existing.get("run_id", ""), False)
        run_id, _ = self._log_run(manifest, version_dir)
        name = self.registered_name(model)
        self._call("POST", "registered-models/create",
                   {"name": name, "description": "Cascade ranker versions (local registry: artifacts/registry)"},
                   ok_codes=("RESOURCE_ALREADY_EXISTS",))
        mv = self._call("POST", "model-versions/create", {
            "name": name, "source": f"runs:/{run_id}/registry", "run_id": run_id,
            "description": f"registry version {manifest.version_id} ({version_dir.resolve()})",
            "tags": [{"key": VERSION_TAG, "value": manifest.version_id},
                     {"key": "cascade.data_fingerprint", "value": manifest.data_fingerprint},
                     {"key": "cascade.git_commit", "value": manifest.git_commit}],
        })["model_version"]
        if alias:
            self._set_alias(name, alias, mv["version"])
        return RecordedVersion(manifest.version_id, mv["version"], run_id, True)

    def _set_alias(self, name: str, alias: str, number: str) -> None:
        self._call("POST", "registered-models/alias", {"name": name, "alias": alias, "version": number})

    def set_aliases(self, model: str, aliases: dict[str, str | None], registry: Registry) -> None:
        """Point each alias at a registry version (recording it first if needed); None removes it."""
        name = self.registered_name(model)
        for alias, version in aliases.items():
            if version is None:
                self._call("DELETE", "registered-models/alias", {"name": name, "alias": alias},
                           ok_codes=("RESOURCE_DOES_NOT_EXIST",))
                continue
            recorded = self.record_version(registry.path(version), model, alias=None)
            self._set_alias(name, alias, recorded.model_version)


def record_version(version_dir: Path | str, model: str = "ranker") -> RecordedVersion | None:
    """Record a freshly registered version in MLflow (call after training writes it).

    Returns None when ``CASCADE_MLFLOW_TRACKING_URI`` is unset (tracking off) or MLflow fails: the
    local registry version is already written, so training must not fail on tracking; the
    warning says how to backfill (``cascade models sync``).
    """
    try:
        tracker = MlflowTracker.from_env()
        if tracker is None:
            return None
        return tracker.record_version(version_dir, model)
    except TrackingError as e:
        print(f"warning: MLflow tracking skipped for {version_dir}: {e}; backfill later with "
              "`cascade models sync`", file=sys.stderr)
        return None
