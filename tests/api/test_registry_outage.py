"""The API while its model registry does not answer: a real MLflow tracking server, stopped
mid-test. Forecasts keep the champion loaded, and /health says the registry is unreachable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from forecaster.settings import Settings
from models.core.bar import Bar
from producers.readers import read_csv_bars
from tests.mlflow_server import QUICK_MLFLOW_HTTP, MlflowServer, register_champion

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def vgi(data_dir: Path) -> list[Bar]:
    return read_csv_bars([data_dir / "vgi" / "vgi2.csv"], ticker="VGI").bars


def forecast_model(client: TestClient, bars: list[Bar]) -> Any:
    body = {"bars": [{k: v for k, v in bar.to_dict().items() if k != "source"} for bar in bars]}
    answer = client.post("/forecast", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["model"]


def health_once_the_broker_answers(client: TestClient, timeout_s: float = 60.0) -> Any:
    """/health, polled until its reader of the predictions topic reached the broker."""
    deadline = time.monotonic() + timeout_s
    while not (health := client.get("/health").json())["broker"]["reachable"]:
        assert time.monotonic() < deadline, f"the broker is still unreachable: {health}"
        time.sleep(0.2)
    return health


def test_a_registry_outage_keeps_the_champion_and_health_says_so(
        vgi: list[Bar], kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in QUICK_MLFLOW_HTTP.items():
        monkeypatch.setenv(name, value)
    store = kafka_settings.replace(mlflow_tracking_uri="", mlflow_env_tracking_uri="",
                                   mlflow_env_registry_uri="")
    assert register_champion(store, vgi) == "1"
    server = MlflowServer(store, tmp_path / "mlflow.log")
    settings = store.replace(mlflow_tracking_uri=server.uri)
    champion = {"name": "arima", "version": "1", "requested": "champion"}
    bars = vgi[:120]
    with server, TestClient(create_app(settings), base_url="http://localhost") as client:
        assert forecast_model(client, bars) == champion
        health = health_once_the_broker_answers(client)
        model = health["model"]
        assert (model["loaded"], model["version"], model["error"], model["registry"]) == (
            True, "1", None, "reachable")
        assert health["status"] == "ok"

        server.stop()
        # Not "no champion": the forecast keeps the champion loaded, not the core's fallback.
        assert forecast_model(client, bars) == champion
        health = health_once_the_broker_answers(client)
        model = health["model"]
        assert health["status"] == "degraded"  # the broker answers: the registry is why
        assert (model["loaded"], model["version"], model["registry"]) == (True, "1", "unreachable")
        assert model["error"].startswith("registry unreachable: the model registry did not answer")
        assert server.uri not in model["error"] and model["serving"] == "arima version 1"

        server.start()
        assert forecast_model(client, bars) == champion
        health = health_once_the_broker_answers(client)
        assert (health["status"], health["model"]["error"], health["model"]["registry"]) == (
            "ok", None, "reachable")
