"""The worker's model holder against a real MLflow tracking server that stops answering: the
champion is kept (not swapped for the fallback), and the outage is said once and in the metrics."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings, load
from models.core.bar import Bar
from producers.readers import read_csv_bars
from stream_app.metrics import WorkerMetrics
from stream_app.model_holder import ModelHolder
from stream_app.monitor import ForecastMonitor
from tests.mlflow_server import QUICK_MLFLOW_HTTP, MlflowServer, register_champion

pytestmark = pytest.mark.slow


@pytest.fixture
def vgi(data_dir: Path) -> list[Bar]:
    return read_csv_bars([data_dir / "vgi" / "vgi2.csv"], ticker="VGI").bars


def registry_up(metrics: WorkerMetrics) -> tuple[float | None, float | None]:
    value = metrics.registry.get_sample_value
    return value("forecaster_registry_up"), value("forecaster_registry_errors_total")


def served(metrics: WorkerMetrics) -> dict[str, str]:
    value = metrics.registry.get_sample_value
    return {name: version for name, version in (("arima", "1"), ("arima", "core"))
            if value("forecaster_model_info", {"name": name, "version": version}) == 1.0}


def test_a_registry_that_stops_answering_keeps_the_champion_and_says_so(
        vgi: list[Bar], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in QUICK_MLFLOW_HTTP.items():
        monkeypatch.setenv(name, value)
    store = load().replace(home=str(tmp_path / "home"), mlflow_tracking_uri="", mlflow_env_tracking_uri="",
                           mlflow_env_registry_uri="")
    assert register_champion(store, vgi) == "1"
    server = MlflowServer(store, tmp_path / "mlflow.log")
    settings: Settings = store.replace(mlflow_tracking_uri=server.uri)
    metrics = WorkerMetrics()
    holder = ModelHolder(settings, ForecastMonitor(settings, metrics))
    with server:
        asyncio.run(holder.reload())
        champion = holder.processor
        assert champion is not None and champion.model is not None and holder.version == "1"
        assert registry_up(metrics) == (1.0, 0.0)
    caplog.set_level(logging.WARNING, logger="stream_app.model_holder")
    for _ in range(3):  # three reload checks during the outage
        asyncio.run(holder.check_for_new_champion())
    # Still the champion, not the core's fallback model; the outage in the metrics, once in the log.
    assert holder.processor is champion and holder.version == "1"
    assert served(metrics) == {"arima": "1"}
    assert registry_up(metrics) == (0.0, 3.0)
    said = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
    assert len(said) == 1 and "keeping champion version 1" in said[0], said
    assert server.uri not in said[0] and "127.0.0.1" not in said[0]
    caplog.clear()
    with server:  # back: the same champion, nothing reloaded
        asyncio.run(holder.check_for_new_champion())
    assert holder.processor is champion and registry_up(metrics) == (1.0, 3.0)
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_a_worker_starting_while_the_registry_does_not_answer_serves_the_core_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in QUICK_MLFLOW_HTTP.items():
        monkeypatch.setenv(name, value)
    # A registry address where nothing listens: the worker starts all the same, and says why.
    settings = load().replace(home=str(tmp_path / "home"), model="arima",
                              mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    metrics = WorkerMetrics()
    holder = ModelHolder(settings, ForecastMonitor(settings, metrics))
    asyncio.run(holder.reload())
    assert holder.processor is not None and holder.processor.model is None and holder.version is None
    assert served(metrics) == {"arima": "core"}
    assert registry_up(metrics) == (0.0, 1.0)
