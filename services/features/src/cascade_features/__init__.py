"""cascade-features: feature serving over Feast's online store.

* :mod:`~cascade_features.definitions` / :mod:`~cascade_features.repo` — Feast objects and
  ``apply-materialize`` of a registry version's offline tables (SQLite or Redis online store);
* :mod:`~cascade_features.stores` — fast readers of the Feast-written online rows (one round trip,
  bulk decode; no ``feast`` import in the serving process);
* :mod:`~cascade_features.hydrator` — the ``OnlineFeatureHydrator`` stage and matrix assembly;
* :mod:`~cascade_features.service` — the ``cascade.features.v1.FeatureService`` gRPC service
  (``python -m cascade_features``).
"""
