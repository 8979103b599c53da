"""Shared fixtures of the experiment integration tests: a real Tansu broker and the serving stack."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cascade_stream.broker import TansuBroker, create_topics  # noqa: E402
from expstack import Services, start_services, two_version_registry  # noqa: E402


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    b = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    try:
        create_topics(b.kafka_config(), ["exposures", "user-events"], partitions=1)
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    tmp = tmp_path_factory.mktemp("exp_stack")
    reg = two_version_registry(tmp / "artifacts")
    s = start_services(reg, tmp)
    try:
        yield s
    finally:
        s.stop()
