"""GET /models and forecasts by the champion: a real MLflow store, a model trained on real data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from forecaster.kafka.broker import free_port
from forecaster.settings import Settings, load
from models import registry
from models.backtest import run_backtest
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.training import train
from producers.readers import read_csv_bars

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vgi(data_dir: Path) -> list[Bar]:
    return read_csv_bars([data_dir / "vgi" / "vgi2.csv"], ticker="VGI").bars


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, vgi: list[Bar]) -> Settings:
    """A store whose ``next-close`` version 1 (the ARIMA family, trained on VGI) is the champion."""
    settings = load().replace(home=str(tmp_path_factory.mktemp("home")), bootstrap=f"127.0.0.1:{free_port()}")
    outcome = train(vgi, "arima", settings, test_days=20)
    mlflow_client = registry.client(settings)
    mlflow_client.set_registered_model_alias(settings.model_name, registry.CHAMPION, outcome.version)
    return settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://localhost") as test_client:
        yield test_client


def forecast(client: TestClient, bars: list[Bar], model: str | None = None) -> Any:
    body = {"bars": [{k: v for k, v in bar.to_dict().items() if k != "source"} for bar in bars]}
    return client.post("/forecast", params={"model": model} if model else {}, json=body)


def test_models_shows_the_champion_with_its_test_metrics(client: TestClient, settings: Settings) -> None:
    answer = client.get("/models").json()
    assert answer["name"] == "next-close"
    champion = answer["champion"]
    assert (champion["version"], champion["family"]) == ("1", "arima")
    version = registry.client(settings).get_model_version("next-close", "1")
    assert champion["metrics"]["mae"] == float(version.tags["test_mae"])
    assert champion["naive_metrics"]["mae"] == float(version.tags["naive_mae"])
    assert champion["test_start"] == version.tags["test_start"]
    assert {"statistic", "p_value"} <= champion["diebold_mariano"].keys()
    assert answer["serving"] == "arima version 1"
    model = client.get("/health").json()["model"]
    assert (model["loaded"], model["version"], model["error"]) == (True, "1", None)


def test_forecasts_use_the_champion_or_the_version_asked_for(client: TestClient, settings: Settings,
                                                             vgi: list[Bar]) -> None:
    bars = vgi[:300]
    expected = run_backtest(bars, CoreConfig.from_settings(settings, model="external"),
                            registry.load_champion(settings))
    for model in (None, "1", "models:/next-close/1"):
        answer = forecast(client, bars, model).json()
        assert answer["model"] == {"name": "arima", "version": "1", "requested": model or "champion"}
        assert answer["predictions"] == expected.predictions
    assert forecast(client, bars, "9").status_code == 404


def test_a_champion_alias_removed_falls_back_to_the_core_model(client: TestClient, settings: Settings,
                                                              vgi: list[Bar]) -> None:
    mlflow_client = registry.client(settings)
    mlflow_client.delete_registered_model_alias(settings.model_name, registry.CHAMPION)
    try:
        answer = forecast(client, vgi[:300]).json()
        assert answer["model"] == {"name": "arima", "version": "2,1,0", "requested": "champion"}
        assert client.get("/health").json()["model"]["loaded"] is False
        assert client.get("/models").json()["champion"] is None
    finally:
        mlflow_client.set_registered_model_alias(settings.model_name, registry.CHAMPION, "1")


def test_a_version_is_loaded_once_and_only_by_its_number(settings: Settings, vgi: list[Bar],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    load_model = registry.load_model

    def counted(uri: str, settings: Settings) -> Any:
        loads.append(uri)
        return load_model(uri, settings)

    monkeypatch.setattr(registry, "load_model", counted)
    with TestClient(create_app(settings), base_url="http://localhost") as fresh:
        for model in ("1", "models:/next-close/1", "1"):
            assert forecast(fresh, vgi[:60], model).status_code == 200
        alias = forecast(fresh, vgi[:60], "models:/next-close@champion")
        assert alias.status_code == 404 and "not an alias" in alias.json()["detail"]["message"]
    # The champion slot loads its own (models:/next-close@champion) once at start.
    assert [uri for uri in loads if "@" not in uri] == ["models:/next-close/1"]
