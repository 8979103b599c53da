"""Feast object definitions for Cascade, built for one registry version's offline tables.

The FileSources point at ``<registry>/<version>/feast/{user,item}_features.parquet`` (written by the
training pipeline), so the definitions are a function of that directory rather than module-level
constants. ``feature_repo/definitions.py`` calls :func:`build_definitions` for the ``feast`` CLI;
:mod:`cascade_features.repo` calls it for ``apply_and_materialize``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

USER_ENTITY = "user"
USER_JOIN_KEY = "user_id"
ITEM_ENTITY = "item"
ITEM_JOIN_KEY = "item_id"
USER_VIEW = "user_features"
ITEM_VIEW = "item_features"
USER_FEATURE = "user_vec"
ITEM_FEATURE = "item_vec"
USER_TABLE_FILE = "user_features.parquet"
ITEM_TABLE_FILE = "item_features.parquet"
TIMESTAMP_COLUMN = "event_timestamp"
CREATED_COLUMN = "created"
VERSION_TAG = "cascade_version"
# One FeatureService per model; the ranker reads both views.
DEFAULT_FEATURE_SERVICE = "ranker_v1"
FEATURE_SERVICES: dict[str, tuple[str, ...]] = {DEFAULT_FEATURE_SERVICE: (USER_VIEW, ITEM_VIEW)}
# Generous: the offline snapshot of a version is served as long as that version is served.
FEATURE_TTL = timedelta(days=36500)


@dataclass(frozen=True)
class Definitions:
    entities: list[Any]
    sources: list[Any]
    # The batch views of the registry version: the ones ``apply_and_materialize`` loads and clears.
    feature_views: list[Any]
    feature_services: list[Any]
    # Real-time views written by the stream worker (cascade_features.stream_definitions); registered
    # here so one ``feast apply`` lists everything, never materialized from the version's tables.
    stream_objects: list[Any] = field(default_factory=list)

    def objects(self) -> list[Any]:
        return [*self.entities, *self.sources, *self.feature_views, *self.feature_services, *self.stream_objects]


def build_definitions(source_dir: Path | str, version: str = "unknown", *, include_stream: bool = True,
                      stream_offline_dir: Path | str | None = None) -> Definitions:
    """Entities, FileSources, FeatureViews and FeatureServices over ``source_dir``'s parquet tables.

    ``include_stream`` adds the stream worker's sources and real-time views over the same entities.
    """
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float32

    src = Path(source_dir).resolve()
    tags = {VERSION_TAG: version}
    user = Entity(name=USER_ENTITY, join_keys=[USER_JOIN_KEY], value_type=ValueType.STRING,
                  description="storefront user")
    item = Entity(name=ITEM_ENTITY, join_keys=[ITEM_JOIN_KEY], value_type=ValueType.STRING,
                  description="catalog item")
    user_src = FileSource(name="user_features_source", path=str(src / USER_TABLE_FILE),
                          timestamp_field=TIMESTAMP_COLUMN, created_timestamp_column=CREATED_COLUMN)
    item_src = FileSource(name="item_features_source", path=str(src / ITEM_TABLE_FILE),
                          timestamp_field=TIMESTAMP_COLUMN, created_timestamp_column=CREATED_COLUMN)
    user_fv = FeatureView(
        name=USER_VIEW, entities=[user], ttl=FEATURE_TTL, source=user_src, online=True, tags=tags,
        schema=[Field(name=USER_FEATURE, dtype=Array(Float32))],
        description="packed user vector (cascade_core.features.FeatureLayout.user_names)",
    )
    item_fv = FeatureView(
        name=ITEM_VIEW, entities=[item], ttl=FEATURE_TTL, source=item_src, online=True, tags=tags,
        schema=[Field(name=ITEM_FEATURE, dtype=Array(Float32))],
        description="packed item vector (cascade_core.features.FeatureLayout.item_names)",
    )
    views = {USER_VIEW: user_fv, ITEM_VIEW: item_fv}
    services = [
        FeatureService(name=name, features=[views[v] for v in view_names], tags=tags)
        for name, view_names in FEATURE_SERVICES.items()
    ]
    stream: list[Any] = []
    if include_stream:
        from cascade_features.stream_definitions import build_stream_definitions  # imports this module

        stream = build_stream_definitions(user, item, stream_offline_dir).objects()
    return Definitions([user, item], [user_src, item_src], [user_fv, item_fv], services, stream)
