"""A worker with a champion and a challenger, against the real broker and a real MLflow store: the
challenger's records on predictions.shadow, the champion's unchanged, both exact across a kill -9."""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path

import pytest

from forecaster.settings import Settings
from models import registry
from models.backtest import run_backtest
from models.core.config import CoreConfig
from models.training import train
from producers.replay import replay
from tests.worker import (
    WorkerProcess,
    assert_same_as_backtest,
    bokeh_slice,
    record_key,
    streamed_records,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_challenger_runs_in_shadow_and_survives_a_kill_exactly(kafka_settings: Settings, data_dir: Path,
                                                                 tmp_path: Path) -> None:
    settings = kafka_settings.replace(window=60, refit_every=10, batch_size=100, model="arima",
                                      mlflow_tracking_uri="", mlflow_env_tracking_uri="",
                                      mlflow_env_registry_uri="")
    bars = bokeh_slice(data_dir, ("AAPL", "IBM"))
    versions = {}
    for alias, trees in (("champion", 10), ("challenger", 3)):
        outcome = train(bars.bars, "xgboost", settings, test_days=60, params={"n_estimators": trees})
        registry.client(settings).set_registered_model_alias(settings.model_name, alias, outcome.version)
        versions[alias] = str(outcome.version)
    config = dataclasses.replace(CoreConfig.from_settings(settings), model="external")
    expected = {}
    for alias, version in versions.items():
        model = registry.load_model(f"models:/{settings.model_name}/{version}", settings)
        backtest = run_backtest(bars.bars, config, model)
        expected[alias] = {record_key(r): r for r in [*backtest.predictions, *backtest.scores]}
    replay(bars, settings, progress=False)
    with WorkerProcess(settings, tmp_path / "worker-1.log") as worker:
        third = len(expected["challenger"]) // 3
        wait_until(lambda: len(streamed_records(settings, settings.topic_shadow)) > third,
                   "a third of the challenger's records", worker)
        worker.stop(signal.SIGKILL)
    with WorkerProcess(settings, tmp_path / "worker-2.log") as worker:
        def complete() -> bool:
            return all({record_key(r) for r in streamed_records(settings, topic)} >= expected[alias].keys()
                       for alias, topic in (("champion", settings.topic_predictions),
                                            ("challenger", settings.topic_shadow)))
        wait_until(complete, "every record of both", worker)
        page = worker.metrics()
    # The champion's records are the champion's backtest, the challenger's its own from the same
    # first bar (registered before it): a kill -9 changed neither.
    assert_same_as_backtest(streamed_records(settings), expected["champion"])
    shadow = streamed_records(settings, settings.topic_shadow)
    assert_same_as_backtest(shadow, expected["challenger"])
    assert {r["model_version"] for r in shadow} == {versions["challenger"]}
    assert f'forecaster_shadow_pairs_total{{alias="challenger",version="{versions["challenger"]}"}}' in page
