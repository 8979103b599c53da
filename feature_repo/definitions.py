"""Feast definitions for the ``feast`` CLI (``feast -c feature_repo apply``).

The objects are built by :func:`cascade_features.definitions.build_definitions` (shared with
``python -m cascade_features.repo``) over the parquet tables in ``$CASCADE_FEAST_SOURCE_DIR``
(a registry version's ``feast/`` folder).
"""

import os

from cascade_features.config import data_dir
from cascade_features.definitions import build_definitions

_source_dir = os.environ.get("CASCADE_FEAST_SOURCE_DIR")
if not _source_dir:
    raise RuntimeError(
        "set CASCADE_FEAST_SOURCE_DIR to a registry version's feast/ folder "
        "(e.g. artifacts/registry/<version>/feast), or run "
        "`python -m cascade_features.repo apply-materialize --version latest`"
    )
# Feast creates the registry / SQLite folder without parents: make $CASCADE_DATA_DIR/feast first.
(data_dir() / "feast").mkdir(parents=True, exist_ok=True)
_defs = build_definitions(_source_dir, version=os.environ.get("CASCADE_MODEL_VERSION", "unknown"))

user, item = _defs.entities
user_features_source, item_features_source = _defs.sources
user_features, item_features = _defs.feature_views
(ranker_v1,) = _defs.feature_services
# The stream worker's sources and real-time views (Feast collects module-level objects).
for _obj in _defs.stream_objects:
    globals()[f"stream_{type(_obj).__name__.lower()}_{_obj.name}"] = _obj
