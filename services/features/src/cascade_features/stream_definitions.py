"""Feast definitions of the real-time (stream) feature views ``user_realtime`` and ``item_realtime``.

The stream feature worker (``cascade_stream.worker``) computes these features from the ``user-events``
Kafka topic and writes them to the online store; the offline job (``cascade_stream.offline``) computes
the same values from the same event log into the parquet tables the views' batch sources read, so
training can point-in-time join them (``get_historical_features``). Both use one implementation
(``cascade_stream.features``); the names below are the contract between them, Feast and readers.

Feast objects registered here:

* ``user_events`` — a :class:`~feast.KafkaSource` describing the raw event stream (topic ``user-events``,
  JSON), paired with a FileSource over the event log; declared so ``feast apply`` lists the stream;
* ``user_realtime_push`` / ``item_realtime_push`` — :class:`~feast.PushSource` s the worker writes
  through, each paired with the offline parquet table (``<data>/feast/stream/<view>.parquet``);
* ``user_realtime`` / ``item_realtime`` — FeatureViews over those push sources.

Every value is "as of" the entity's latest event (the row's ``event_timestamp``): a window count is
the number of the entity's events with ``as_of - window < ts <= as_of``. Readers that need counts as
of *now* use ``last_event_ms`` to tell how stale they are (``trending_score`` decays exactly:
multiply by ``0.5 ** ((now - last_event_ms) / TRENDING_HALF_LIFE_MS)``).

``definitions.build_definitions`` adds these objects next to the batch views (one call to
:func:`build_stream_definitions` with its two entities); :func:`stream_objects` gives a standalone
list (entities included) for the worker and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cascade_features.config import data_dir
from cascade_features.definitions import (
    CREATED_COLUMN,
    ITEM_ENTITY,
    ITEM_JOIN_KEY,
    TIMESTAMP_COLUMN,
    USER_ENTITY,
    USER_JOIN_KEY,
)

# -- the feature contract (shared by the worker, the offline job and readers) -------------------------
EVENT_TYPES: tuple[str, ...] = ("impression", "view", "click", "add_to_cart", "purchase")
# Sliding windows, suffix -> length in milliseconds.
WINDOWS_MS: dict[str, int] = {"5m": 5 * 60_000, "1h": 60 * 60_000, "24h": 24 * 60 * 60_000}
MAX_WINDOW_MS = max(WINDOWS_MS.values())
LAST_N = 10
# Item trending score: sum over the item's events in the largest window of
# TRENDING_WEIGHTS[type] * 0.5 ** ((as_of - ts) / TRENDING_HALF_LIFE_MS).
TRENDING_WEIGHTS: dict[str, float] = {
    "impression": 0.0,
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
}
TRENDING_HALF_LIFE_MS = 60 * 60_000

USER_REALTIME_VIEW = "user_realtime"
ITEM_REALTIME_VIEW = "item_realtime"
USER_PUSH_SOURCE = "user_realtime_push"
ITEM_PUSH_SOURCE = "item_realtime_push"
EVENTS_KAFKA_SOURCE = "user_events"
EVENTS_TOPIC = "user-events"
LAST_ITEMS = "last_item_ids"
LAST_CATEGORIES = "last_categories"
LAST_EVENT_MS = "last_event_ms"
TRENDING = "trending_score"
STREAM_DIR = "stream"  # under <data>/feast/
EVENT_LOG_FILE = "user_events.parquet"
# Generous: a row stays served until the entity's next event replaces it (staleness: last_event_ms).
REALTIME_TTL = timedelta(days=3650)


def count_feature(event_type: str, window: str) -> str:
    """Name of the count of ``event_type`` events in ``window`` (e.g. ``click_count_5m``)."""
    return f"{event_type}_count_{window}"


COUNT_FEATURES: tuple[str, ...] = tuple(count_feature(t, w) for w in WINDOWS_MS for t in EVENT_TYPES)
USER_REALTIME_FEATURES: tuple[str, ...] = (*COUNT_FEATURES, LAST_ITEMS, LAST_CATEGORIES, LAST_EVENT_MS)
ITEM_REALTIME_FEATURES: tuple[str, ...] = (*COUNT_FEATURES, TRENDING, LAST_EVENT_MS)


def stream_offline_dir() -> Path:
    """``<data>/feast/stream``: where the offline job writes the views' parquet tables."""
    return data_dir() / "feast" / STREAM_DIR


def offline_table_path(view: str, offline_dir: Path | str | None = None) -> Path:
    return Path(offline_dir or stream_offline_dir()).resolve() / f"{view}.parquet"


@dataclass(frozen=True)
class StreamDefinitions:
    sources: list[Any]
    feature_views: list[Any]

    def objects(self) -> list[Any]:
        return [*self.sources, *self.feature_views]


def _schema(names: tuple[str, ...]) -> list[Any]:
    from feast import Field
    from feast.types import Array, Float64, Int64, String

    kinds: dict[str, Any] = {LAST_ITEMS: Array(String), LAST_CATEGORIES: Array(String), TRENDING: Float64}
    return [Field(name=n, dtype=kinds.get(n, Int64)) for n in names]


def build_stream_definitions(
    user: Any,
    item: Any,
    offline_dir: Path | str | None = None,
    bootstrap_servers: str = "127.0.0.1:9092",
) -> StreamDefinitions:
    """KafkaSource, PushSources and the two real-time FeatureViews over entities ``user``/``item``."""
    from feast import FeatureView, FileSource, KafkaSource, PushSource
    from feast.data_format import JsonFormat

    def table(view: str) -> Any:
        return FileSource(
            name=f"{view}_offline",
            path=str(offline_table_path(view, offline_dir)),
            timestamp_field=TIMESTAMP_COLUMN,
            created_timestamp_column=CREATED_COLUMN,
        )

    event_log = FileSource(
        name=f"{EVENTS_KAFKA_SOURCE}_log",
        path=str(Path(offline_dir or stream_offline_dir()).resolve() / EVENT_LOG_FILE),
        timestamp_field=TIMESTAMP_COLUMN,
    )
    kafka = KafkaSource(
        name=EVENTS_KAFKA_SOURCE,
        timestamp_field=TIMESTAMP_COLUMN,
        topic=EVENTS_TOPIC,
        kafka_bootstrap_servers=bootstrap_servers,
        batch_source=event_log,
        message_format=JsonFormat(
            schema_json=(
                "event_id string, event_type string, user_id string, item_id string, timestamp string, "
                "request_id string, context map<string,string>"
            )
        ),
        description="storefront user events (schema services/stream/schemas/user-event.v1.json)",
    )
    user_push = PushSource(name=USER_PUSH_SOURCE, batch_source=table(USER_REALTIME_VIEW))
    item_push = PushSource(name=ITEM_PUSH_SOURCE, batch_source=table(ITEM_REALTIME_VIEW))
    tags = {"stream_source": EVENTS_KAFKA_SOURCE, "writer": "cascade_stream.worker"}
    user_fv = FeatureView(
        name=USER_REALTIME_VIEW,
        entities=[user],
        ttl=REALTIME_TTL,
        source=user_push,
        online=True,
        schema=_schema(USER_REALTIME_FEATURES),
        tags=tags,
        description="per-user event counts over 5m/1h/24h, last items/categories, recency (as of last event)",
    )
    item_fv = FeatureView(
        name=ITEM_REALTIME_VIEW,
        entities=[item],
        ttl=REALTIME_TTL,
        source=item_push,
        online=True,
        schema=_schema(ITEM_REALTIME_FEATURES),
        tags=tags,
        description="per-item event counts over 5m/1h/24h, trending score, recency (as of last event)",
    )
    return StreamDefinitions([kafka, user_push, item_push], [user_fv, item_fv])


def default_entities() -> tuple[Any, Any]:
    """The ``user`` and ``item`` entities, defined exactly as :mod:`cascade_features.definitions` does."""
    from feast import Entity, ValueType

    user = Entity(
        name=USER_ENTITY,
        join_keys=[USER_JOIN_KEY],
        value_type=ValueType.STRING,
        description="storefront user",
    )
    item = Entity(
        name=ITEM_ENTITY, join_keys=[ITEM_JOIN_KEY], value_type=ValueType.STRING, description="catalog item"
    )
    return user, item


def stream_objects(
    offline_dir: Path | str | None = None, bootstrap_servers: str = "127.0.0.1:9092"
) -> list[Any]:
    """Entities + stream sources + views: everything ``FeatureStore.apply`` needs for the stream views."""
    user, item = default_entities()
    return [user, item, *build_stream_definitions(user, item, offline_dir, bootstrap_servers).objects()]
