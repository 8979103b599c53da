"""A dedicated redis-server for the bench, holding one registry version's features in Feast's layout.

Why dedicated: the bench charges Redis's CPU to the requests it serves (``/proc/<pid>/stat``), which
is only honest when no one else uses that server. It listens on a free loopback port.

Why not ``feast materialize``: Feast's Redis writer converts every row through protobuf in Python
(~1,300 rows/s measured here: ~25 min for 2M entities). :func:`load_features` instead runs
``feast apply`` (so the Feast SDK of the naive baseline knows the views), then writes the exact bytes
Feast's ``RedisOnlineStore.online_write_batch`` writes (hash key = serialized entity key + project,
field ``mmh3("<view>:<feature>")`` = serialized ``ValueProto``, field ``_ts:<view>`` = serialized
``Timestamp``) with pipelined ``HSET`` s, and finally reads a sample back through
``FeatureStore.get_online_features`` and compares it with the parquet tables: a layout drift fails the
bench instead of measuring a wrong store. The loaded database is saved as an RDB file next to the
registry and reloaded by later runs in seconds.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import redis

from cascade_features.codec import EntityKeyEncoder, float_list_header, redis_field
from cascade_features.config import FeastSettings, RedisStoreConfig, feast_repo_config
from cascade_features.definitions import (
    DEFAULT_FEATURE_SERVICE,
    ITEM_FEATURE,
    ITEM_JOIN_KEY,
    ITEM_TABLE_FILE,
    ITEM_VIEW,
    USER_FEATURE,
    USER_JOIN_KEY,
    USER_TABLE_FILE,
    USER_VIEW,
    build_definitions,
)
from cascade_platform.procs import free_port

PROJECT = "cascade_bench"
MARKER_KEY = b"cascade_bench:loaded"


@dataclass
class RedisServer:
    """One ``redis-server`` child process on loopback; ``dbfile`` is loaded at start when it exists."""

    workdir: Path
    dbfile: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120.0) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "redis-server.log", "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--dbfilename", self.dbfile],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        client = self.client()
        while True:
            try:
                info = client.info("persistence")
                if isinstance(info, dict) and info.get("loading") == 0:
                    return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {self.port} did not come up; see {self.workdir}/redis-server.log")
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=600)

    def config(self) -> RedisStoreConfig:
        return RedisStoreConfig(host="127.0.0.1", port=self.port)

    def save(self) -> None:
        self.client().save()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError):
                self.client().shutdown(nosave=True)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _vectors(path: Path, key: str, vec: str) -> tuple[list[str], np.ndarray, int]:
    t = pq.read_table(path, columns=[key, vec, "event_timestamp"])
    ids = t.column(key).to_pylist()
    col = t.column(vec).combine_chunks()
    dim = len(col[0])
    mat = col.values.to_numpy(zero_copy_only=False).astype("<f4").reshape(len(ids), dim)
    ts = t.column("event_timestamp")[0].as_py()
    return ids, mat, int(ts.timestamp())


def write_table(client: redis.Redis, *, view: str, feature: str, join_key: str, path: Path,
                chunk: int = 20_000) -> int:
    """HSET every row of one offline table exactly as Feast's Redis writer does; returns rows written."""
    from google.protobuf.timestamp_pb2 import Timestamp

    ids, mat, ts_s = _vectors(path, join_key, feature)
    ts_field, f_field = f"_ts:{view}".encode(), redis_field(view, feature)
    ts_val = Timestamp(seconds=ts_s).SerializeToString()
    header = float_list_header(mat.shape[1])
    encoder, suffix = EntityKeyEncoder(join_key), PROJECT.encode()
    for s in range(0, len(ids), chunk):
        keys = encoder.encode_many(ids[s:s + chunk])
        pipe = client.pipeline(transaction=False)
        for k, row in zip(keys, mat[s:s + chunk]):
            pipe.execute_command("HSET", k + suffix, ts_field, ts_val, f_field, header + row.tobytes())
        pipe.execute()
    return len(ids)


def feast_settings(server: RedisServer, registry_path: Path) -> FeastSettings:
    return FeastSettings(project=PROJECT, registry_path=str(registry_path), online_store=server.config())


def verify_with_feast(server: RedisServer, registry_path: Path, feast_dir: Path, n: int = 20) -> None:
    """Read ``n`` users and items back through the Feast SDK; raise if any vector differs."""
    from feast import FeatureStore

    store = FeatureStore(config=feast_repo_config(feast_settings(server, registry_path)))
    users, umat, _ = _vectors(feast_dir / USER_TABLE_FILE, USER_JOIN_KEY, USER_FEATURE)
    items, imat, _ = _vectors(feast_dir / ITEM_TABLE_FILE, ITEM_JOIN_KEY, ITEM_FEATURE)
    rng = np.random.default_rng(0)
    ui, ii = rng.integers(0, len(users), n), rng.integers(0, len(items), n)
    rows = [{USER_JOIN_KEY: users[a], ITEM_JOIN_KEY: items[b]} for a, b in zip(ui, ii)]
    got = store.get_online_features(features=store.get_feature_service(DEFAULT_FEATURE_SERVICE),
                                    entity_rows=rows).to_dict()
    if not np.allclose(np.asarray(got[USER_FEATURE], np.float32), umat[ui]) or not np.allclose(
            np.asarray(got[ITEM_FEATURE], np.float32), imat[ii]):
        raise RuntimeError("bulk-loaded Redis rows differ from what Feast reads: Feast's layout changed?")


def load_features(server: RedisServer, registry_path: Path, feast_dir: Path, version: str) -> float:
    """``feast apply`` + bulk load + Feast read-back check + SAVE, unless already loaded; returns seconds."""
    client = server.client()
    if client.get(MARKER_KEY) == version.encode() and registry_path.is_file():
        return 0.0
    t0 = time.perf_counter()
    from feast import FeatureStore

    registry_path.parent.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(config=feast_repo_config(feast_settings(server, registry_path)))
    with contextlib.redirect_stdout(io.StringIO()):
        store.apply(build_definitions(feast_dir, version, include_stream=False).objects())
    client.flushdb()
    write_table(client, view=USER_VIEW, feature=USER_FEATURE, join_key=USER_JOIN_KEY, path=feast_dir / USER_TABLE_FILE)
    write_table(client, view=ITEM_VIEW, feature=ITEM_FEATURE, join_key=ITEM_JOIN_KEY, path=feast_dir / ITEM_TABLE_FILE)
    verify_with_feast(server, registry_path, feast_dir)
    client.set(MARKER_KEY, version)
    server.save()
    return time.perf_counter() - t0
