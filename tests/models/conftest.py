"""A real MLflow store (SQLite file and artifact folder in a temp dir) shared by this folder's tests.

Creating the SQLite schema costs seconds, so one store serves the module that asks for it; tests
that must not see each other's versions use a registered model name of their own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from forecaster import settings as settings_module
from forecaster.settings import Settings
from models.core.bar import Bar


@pytest.fixture(scope="module")
def mlflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("forecaster-home")


@pytest.fixture
def store(mlflow_home: Path) -> Settings:
    """Settings on the module's MLflow store with a fresh registered model name and a short ARIMA window."""
    return settings_module.load().replace(home=str(mlflow_home), mlflow_tracking_uri="",
                                          mlflow_env_tracking_uri="", mlflow_env_registry_uri="",
                                          model_name=f"next-close-{uuid.uuid4().hex[:8]}", window=64)


@pytest.fixture(scope="session")
def aph_bars(data_dir: Path) -> list[Bar]:
    """Amphenol (APH) from December 2016 on: 298 real bars of the S&P 500 file."""
    from producers.readers import read_csv_bars

    path = data_dir / "sp500-5yr-sample.csv.gz"
    return read_csv_bars([path], tickers=["APH"], start=dt.date(2016, 12, 1)).bars
