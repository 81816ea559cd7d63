"""Which MLflow store `forecaster train` and `promote` use: ours, else MLflow's own variables, else local.

Real SQLite stores in a temp folder; the ARIMA family trains in seconds on APH's 2017 bars.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from forecaster.cli import main

VARIABLES = ("FORECASTER_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(scope="module")
def aph_csv(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = pd.read_csv(data_dir / "sp500-5yr-sample.csv.gz")
    path = tmp_path_factory.mktemp("aph") / "aph.csv"
    frame[(frame["Name"] == "APH") & (frame["date"] >= "2016-12-01")].to_csv(path, index=False)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FORECASTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FORECASTER_WINDOW", "64")
    return tmp_path / "home"


def _train(path: Path, experiment: str) -> int:
    return main(["train", str(path), "--model", "arima", "--experiment", experiment, "--test-days", "60",
                 "--params", '{"order": [2, 1, 0], "lookback": 64}'])


def _runs(uri: str, experiment: str) -> int:
    found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    return 0 if found is None else len(mlflow.MlflowClient(uri).search_runs([found.experiment_id]))


def _versions(uri: str) -> int:
    return len(mlflow.MlflowClient(uri, registry_uri=uri).search_model_versions("name='next-close'"))


def test_mlflow_tracking_uri_alone_is_where_the_run_and_the_version_go(
        aph_csv: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    team = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team)
    assert _train(aph_csv, "X") == 0
    assert _runs(team, "X") == 1 and _versions(team) == 1
    assert not (home / "mlflow").exists()
    # APH's ARIMA(2,1,0) beats naive on these 60 days (MASE 0.93): promote moves the alias there.
    assert main(["promote", "next-close"]) == 0
    assert mlflow.MlflowClient(team).get_model_version("next-close", "1").aliases == ["champion"]


def test_mlflow_registry_uri_takes_the_versions_and_the_tracking_uri_the_runs(
        aph_csv: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs, versions = f"sqlite:///{tmp_path / 'runs.db'}", f"sqlite:///{tmp_path / 'versions.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", runs)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", versions)
    assert _train(aph_csv, "Y") == 0
    assert _runs(runs, "Y") == 1 and _versions(versions) == 1 and _versions(runs) == 0
    assert main(["promote", "next-close"]) == 0
    assert mlflow.MlflowClient(registry_uri=versions).get_model_version("next-close", "1").aliases == [
        "champion"]


def test_forecaster_variable_wins_over_mlflow_variables(
        aph_csv: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = f"sqlite:///{tmp_path / 'ours.db'}", tmp_path / "theirs.db"
    monkeypatch.setenv("FORECASTER_MLFLOW_TRACKING_URI", ours)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{theirs}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{theirs}")
    assert _train(aph_csv, "Z") == 0
    assert _runs(ours, "Z") == 1 and _versions(ours) == 1
    assert not theirs.exists()


def test_using_a_store_leaves_mlflows_variables_as_they_were(home: Path, tmp_path: Path) -> None:
    # MLflow's set_tracking_uri writes MLFLOW_TRACKING_URI; settings loaded afterwards in the same
    # process (a test, the API) must not take that for the user's choice.
    from forecaster.settings import Settings, load
    from models import registry

    registry.client(Settings(home=str(tmp_path / "elsewhere")))
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert load().mlflow_sources()["tracking"][1].startswith("the default under FORECASTER_HOME")


@pytest.mark.parametrize(("environ", "tracking", "registry"), [
    ({}, "(the default under FORECASTER_HOME; neither FORECASTER_MLFLOW_TRACKING_URI nor MLFLOW_TRACKING_URI",
     "(the default under FORECASTER_HOME"),
    ({"MLFLOW_TRACKING_URI": "sqlite:///t.db"},
     "sqlite:///t.db (set by MLFLOW_TRACKING_URI; FORECASTER_MLFLOW_TRACKING_URI is not set)",
     "sqlite:///t.db (set by MLFLOW_TRACKING_URI; neither FORECASTER_MLFLOW_TRACKING_URI nor "
     "MLFLOW_REGISTRY_URI is set)"),
    ({"MLFLOW_TRACKING_URI": "sqlite:///t.db", "MLFLOW_REGISTRY_URI": "sqlite:///r.db"},
     "sqlite:///t.db (set by MLFLOW_TRACKING_URI", "sqlite:///r.db (set by MLFLOW_REGISTRY_URI"),
    ({"FORECASTER_MLFLOW_TRACKING_URI": "http://mlflow:5000", "MLFLOW_REGISTRY_URI": "sqlite:///r.db"},
     "http://mlflow:5000 (set by FORECASTER_MLFLOW_TRACKING_URI)",
     "http://mlflow:5000 (set by FORECASTER_MLFLOW_TRACKING_URI)"),
])
def test_settings_say_which_store_is_in_force_and_why(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        environ: dict[str, str], tracking: str, registry: str) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["settings"]) == 0
    lines = {line.split(" URI in force: ")[0]: line for line in capsys.readouterr().out.splitlines()
             if " URI in force: " in line}
    assert tracking in lines["# MLflow tracking"] and registry in lines["# MLflow registry"]
