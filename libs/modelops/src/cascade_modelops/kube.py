"""Routing in a cluster: the ConfigMap the ranking pods mount as their routing file.

The ranking Deployment mounts ConfigMap ``<name>`` (default ``cascade-model-routing``) as a volume
(not ``subPath``: kubelet must be able to swap the file) and sets ``CASCADE_MODEL_ROUTING_FILE`` to
``<mount>/<key>``; the service polls it. A change is one optimistic read-decide-patch:

1. ``GET`` the ConfigMap; parse ``data[<key>]`` and the rollback history annotation;
2. decide (pure, :mod:`cascade_modelops.promotion`);
3. ``PATCH`` (JSON merge patch) the new ``data[<key>]`` plus annotations saying who changed what and
   when, carrying the ``resourceVersion`` read in step 1 — the API server answers 409 when someone
   changed the ConfigMap in between, and the whole step is retried on the fresh state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cascade_modelops.appliers import Change, ChangeMeta, RoutingStateError, parse_history, parse_routing
from cascade_modelops.promotion import Decision, RolloutState

DEFAULT_CONFIGMAP = "cascade-model-routing"
DEFAULT_KEY = "routing.json"
ANNOTATION_PREFIX = "cascade.dev/"
HISTORY_ANNOTATION = ANNOTATION_PREFIX + "routing-history"
CHANGE_CAUSE = "kubernetes.io/change-cause"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def patch_body(decision: Decision, meta: ChangeMeta, key: str, resource_version: str | None) -> dict[str, Any]:
    """The JSON merge patch that applies ``decision`` to the routing ConfigMap."""
    metadata: dict[str, Any] = {
        "annotations": {
            HISTORY_ANNOTATION: json.dumps(list(decision.after.history)),
            ANNOTATION_PREFIX + "last-action": decision.action,
            ANNOTATION_PREFIX + "last-version": decision.version,
            ANNOTATION_PREFIX + "changed-by": meta.actor,
            ANNOTATION_PREFIX + "changed-at": meta.ts,
            CHANGE_CAUSE: f"{decision.summary} (by {meta.actor} at {meta.ts})",
        }
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version  # optimistic concurrency: 409 if it moved
    return {"metadata": metadata, "data": {key: decision.after.routing.to_json()}}


class ConfigMapApplier:
    """Reads and patches the routing ConfigMap through ``kubernetes.client.CoreV1Api``."""

    def __init__(self, api: Any, namespace: str, name: str = DEFAULT_CONFIGMAP, key: str = DEFAULT_KEY,
                 max_conflicts: int = 3) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.key = key
        self.max_conflicts = max_conflicts
        self.target = f"configmap:{namespace}/{name}"

    def _get(self) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.read_namespaced_config_map(self.name, self.namespace)
        except ApiException as e:
            raise self._error(e, "read") from None

    def _error(self, e: Any, verb: str) -> RoutingStateError:
        where = f"ConfigMap {self.namespace}/{self.name}"
        if e.status == 404:
            return RoutingStateError(
                f"{where} not found: install the ranking chart (it creates the routing ConfigMap) or pass "
                "--configmap/--namespace naming the one the ranking pods mount")
        if e.status in (401, 403):
            return RoutingStateError(f"{verb} {where} was refused ({e.status} {e.reason}): your credentials need "
                                     "get and patch on configmaps in that namespace")
        return RoutingStateError(f"{verb} {where} failed: {e.status} {e.reason}")

    def _state(self, cm: Any) -> RolloutState:
        where = f"ConfigMap {self.namespace}/{self.name}"
        data = cm.data or {}
        if self.key not in data:
            raise RoutingStateError(f"{where} has no data key {self.key!r} (keys: {sorted(data)}); "
                                    "pass --key naming the routing file the ranking pods read")
        routing = parse_routing(data[self.key], f"{where} data[{self.key!r}]")
        annotations = (cm.metadata.annotations or {}) if cm.metadata else {}
        raw_history = annotations.get(HISTORY_ANNOTATION)
        history = parse_history(raw_history, f"{where} annotation {HISTORY_ANNOTATION}") if raw_history else ()
        return RolloutState(routing, history)

    def read(self) -> RolloutState:
        return self._state(self._get())

    def update(self, change: Change, meta: ChangeMeta) -> Decision:
        from kubernetes.client.exceptions import ApiException

        for _ in range(self.max_conflicts):
            cm = self._get()
            decision = change(self._state(cm))
            body = patch_body(decision, meta, self.key, cm.metadata.resource_version)
            try:
                self.api.patch_namespaced_config_map(self.name, self.namespace, body,
                                                     _content_type="application/merge-patch+json")
            except ApiException as e:
                if e.status == 409:  # changed since we read it: decide again on the new state
                    continue
                raise self._error(e, "patch") from None
            return decision
        raise RoutingStateError(f"ConfigMap {self.namespace}/{self.name} kept changing under us "
                                f"({self.max_conflicts} conflicts); retry the command")


def core_api(kubeconfig: str | None = None, context: str | None = None) -> tuple[Any, str | None]:
    """``(CoreV1Api, namespace of the kubeconfig context or pod)`` from a kubeconfig or in-cluster config.

    Order: ``kubeconfig`` argument, ``$KUBECONFIG``, ``~/.kube/config``, then the pod's service account.
    """
    from kubernetes import client, config

    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    default_path = Path.home() / ".kube" / "config"
    if path is None and default_path.is_file():
        path = str(default_path)
    if path:
        api_client = config.new_client_from_config(config_file=path, context=context)
        _, active = config.list_kube_config_contexts(config_file=path)
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=path)
            active = next((c for c in contexts if c["name"] == context), active)
        namespace = (active or {}).get("context", {}).get("namespace")
        return client.CoreV1Api(api_client), namespace
    try:
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        raise RoutingStateError("no Kubernetes credentials: pass --kubeconfig, set KUBECONFIG, or run in a pod "
                                "with a service account") from None
    ns = SA_NAMESPACE_FILE.read_text().strip() if SA_NAMESPACE_FILE.is_file() else None
    return client.CoreV1Api(client.ApiClient(cfg)), ns
