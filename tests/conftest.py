"""Shared fixtures: one real Kafka broker per test session, per-test topic names, and a worker's settings.

The broker is a real Apache Kafka 3.9 (``forecaster.kafka.broker.LocalBroker``) on a free port
in a temporary folder, started once; set ``FORECASTER_BOOTSTRAP`` to run the suite against a
broker that already runs instead. Every test that asks for ``kafka_settings`` gets topics of its
own (random suffix), so tests never see each other's messages; ``worker_settings`` adds to those the
settings of the stream and fault suites' workers, once per table store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from forecaster import settings as settings_module
from forecaster.kafka.broker import LocalBroker, free_port
from forecaster.kafka.topics import create_topics
from forecaster.settings import Settings


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI the suite runs from a copy of the clone with nothing beside it (.ci/run): a user's clone
    or wheel has no ``../shared``, so a test that passes only with it beside the checkout must fail."""
    beside = Path(__file__).resolve().parents[2] / "shared"
    if os.environ.get("CI") and beside.exists():
        raise pytest.UsageError(f"{beside} is within reach of the checkout; CI runs the suite without it")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real sample data (``FORECASTER_DATA_DIR``, default: the package's own ``forecaster/data``)."""
    path = Path(settings_module.load().data_dir)
    assert (path / "README.md").exists(), f"the sample data folder {path} is missing"
    return path


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The session's broker: None when ``FORECASTER_BOOTSTRAP`` names an external one."""
    if os.environ.get("FORECASTER_BOOTSTRAP"):
        yield None
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    broker.start(port=free_port())
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalBroker | None) -> str:
    if kafka_broker is None:
        return os.environ["FORECASTER_BOOTSTRAP"]
    info = kafka_broker.info()
    assert info is not None
    return info.bootstrap


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings pointing at the session broker, with this test's own freshly created topics."""
    suffix = uuid.uuid4().hex[:10]
    settings = settings_module.load().replace(
        bootstrap=kafka_bootstrap,
        home=str(tmp_path / "home"),
        topic_bars=f"bars-{suffix}",
        topic_dlq=f"bars.dlq-{suffix}",
        topic_predictions=f"predictions-{suffix}",
        topic_shadow=f"predictions.shadow-{suffix}",
        app_id=f"forecaster-test-{suffix}",
        partitions=4,
    )
    create_topics(settings)
    return settings


#: The worker's table stores: Faust's memory store (the default) and RocksDB (the rocksdb extra),
#: whose reads, unlike the memory store's, go to the partition of the event they are made under.
STORES = [pytest.param("memory://", id="memory"), pytest.param("rocksdb://", id="rocksdb")]


@pytest.fixture(params=STORES)
def worker_settings(kafka_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """``kafka_settings`` for a worker of the stream and fault suites, on each table store: a short
    window and refit interval keep warm-up short, so most records come from the ARIMA, and batches
    of 100 leave several commits between the fault suite's kill points."""
    return kafka_settings.replace(window=60, refit_every=10, batch_size=100, model="arima",
                                  store=request.param)
