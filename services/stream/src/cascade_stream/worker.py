"""The stream feature worker: ``python -m cascade_stream.worker`` (its own process; metrics on 9105).

Runs the ``users`` and ``items`` pipelines of :mod:`cascade_stream.pipeline` (one thread each; set
``CASCADE_ROLES='["users"]'`` / ``'["items"]'`` to run them as separate deployments). At start-up it
creates missing topics (``CASCADE_CREATE_TOPICS``), registers the stream feature views with Feast
(``CASCADE_FEAST_APPLY``) and loads the item catalog for categories. SIGTERM/SIGINT finish the
current micro-batch and leave the consumer groups; a crash (even ``kill -9``) loses nothing: offsets
are committed only after the online-store write, and restarts rebuild window state from the log.

Configuration (env, ``CASCADE_`` prefix, ``__`` nesting): ``KAFKA__BOOTSTRAP_SERVERS``,
``KAFKA__SECURITY_PROTOCOL``/``SASL_*``/``SSL_*``, ``TOPICS__EVENTS``, ``GROUP_ID``, ``ONLINE_STORE__TYPE``
(sqlite|redis) and its fields, ``FEAST_PROJECT``, ``DATA_DIR`` (Feast registry), ``ARTIFACTS_DIR`` +
``MODEL_VERSION`` or ``ITEMS_PATH`` (catalog), ``WRITER``, ``METRICS_PORT`` — see ``settings.WorkerSettings``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from cascade_core.errors import CascadeError
from cascade_platform.logs import setup_logging
from cascade_platform.metrics import start_metrics_server
from cascade_platform.settings import load_settings

from cascade_stream.broker import ensure_topics
from cascade_stream.catalog import catalog_path, load_catalog
from cascade_stream.decode import Rules
from cascade_stream.pipeline import Role, StreamPipeline
from cascade_stream.worker_settings import WorkerSettings
from cascade_stream.writer import make_writer

log = logging.getLogger("cascade.stream.worker")


def feature_store(s: WorkerSettings) -> Any:
    from cascade_features.config import FeastSettings, default_registry_path, feast_repo_config
    from feast import FeatureStore

    fs = FeastSettings(
        project=s.feast_project,
        registry_path=str(s.feast_registry_path or default_registry_path()),
        online_store=s.online_store,
    )
    return FeatureStore(config=feast_repo_config(fs))


def apply_definitions(s: WorkerSettings) -> None:
    """Register the stream views (idempotent; other views of the project are left alone)."""
    from cascade_features.stream_definitions import stream_objects

    feature_store(s).apply(stream_objects(s.offline_dir, s.kafka.bootstrap_servers))


def build_pipelines(s: WorkerSettings, catalog: dict[str, str]) -> list[StreamPipeline]:
    pipelines = []
    for name in s.roles:
        role = Role.users(s.topics) if name == "users" else Role.items(s.topics)
        rules = Rules.from_settings(s, role.key_field)
        kind = role.kind

        def writer_factory(kind: Any = kind) -> Any:
            return make_writer(s.writer, feature_store(s), kind)

        pipelines.append(
            StreamPipeline(
                role,
                s.kafka,
                f"{s.group_id}.{role.name}",
                s.topics.dlq,
                rules,
                writer_factory,
                catalog if name == "users" else None,
                s.poll_timeout_ms,
                s.write_retry_s,
            )
        )
    return pipelines


def run(s: WorkerSettings) -> int:
    catalog: dict[str, str] = {}
    if "users" in s.roles:
        path = catalog_path(s.artifacts_dir, s.model_version, s.items_path)
        catalog = load_catalog(path)
        log.info("catalog %s: %d items", path, len(catalog))
    if s.create_topics:
        created = ensure_topics(s.kafka, s.topics)
        if created:
            log.info("created topics %s", created)
    if s.feast_apply:
        apply_definitions(s)
    start_metrics_server(s.metrics_port, s.host)
    pipelines = build_pipelines(s, catalog)
    failed: list[BaseException] = []
    done = threading.Event()

    def target(p: StreamPipeline) -> None:
        try:
            p.run()
        except BaseException as e:  # a pipeline that dies takes the process down: let it restart clean
            log.exception("pipeline %s failed", p.role.name)
            failed.append(e)
        finally:
            done.set()

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current micro-batch", signum)
        for p in pipelines:
            p.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [threading.Thread(target=target, args=(p,), name=f"pipeline-{p.role.name}") for p in pipelines]
    for t in threads:
        t.start()
    log.info(
        "stream worker running: roles=%s writer=%s store=%s", s.roles, s.writer, s.online_store.describe()
    )
    while not done.wait(0.5):
        pass
    for p in pipelines:
        p.stop_event.set()
    for t in threads:
        t.join(timeout=30)
    return 1 if failed else 0


def main() -> int:
    s = load_settings(WorkerSettings)
    setup_logging("stream", s.log_level, s.log_json)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        return run(s)
    except (CascadeError, FileNotFoundError, ValueError) as e:
        print(f"stream worker: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
