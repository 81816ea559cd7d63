"""A worker with a champion and challengers, against the real broker and a real MLflow store: the
challengers' records on predictions.shadow, the champion's unchanged, all exact across a kill -9."""

from __future__ import annotations

import dataclasses
import re
import signal
from pathlib import Path

import pytest

from forecaster.settings import Settings
from models import registry
from models.backtest import run_backtest
from models.core.config import CoreConfig
from models.training import train
from producers.readers import ReadResult
from producers.replay import replay
from tests.worker import (
    WorkerProcess,
    assert_same_as_backtest,
    bokeh_slice,
    metric,
    record_key,
    streamed_records,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SHADOW_COUNTERS = ("forecaster_shadow_pairs_total", "forecaster_shadow_champion_loss_total",
                   "forecaster_shadow_challenger_loss_total")


@pytest.mark.parametrize(("horizons", "challengers"), [
    pytest.param((1,), {"challenger": 3}, id="one-challenger"),
    # Each challenger a model of its own (trees), so that records given to the wrong one differ.
    pytest.param((1, 5, 20), {"challenger": 3, "challenger-x": 5}, id="two-challengers-three-horizons"),
])
def test_challengers_run_in_shadow_and_survive_a_kill_exactly(kafka_settings: Settings, data_dir: Path,
                                                              tmp_path: Path, horizons: tuple[int, ...],
                                                              challengers: dict[str, int]) -> None:
    settings = kafka_settings.replace(window=60, refit_every=10, batch_size=100, model="arima",
                                      horizons=horizons, mlflow_tracking_uri="", mlflow_env_tracking_uri="",
                                      mlflow_env_registry_uri="")
    bars = bokeh_slice(data_dir, ("AAPL", "IBM"))
    versions = {}
    for alias, trees in {"champion": 10, **challengers}.items():
        outcome = train(bars.bars, "xgboost", settings, test_days=60, params={"n_estimators": trees})
        registry.client(settings).set_registered_model_alias(settings.model_name, alias, outcome.version)
        versions[alias] = str(outcome.version)
    config = dataclasses.replace(CoreConfig.from_settings(settings), model="external")
    expected = {}
    for alias, version in versions.items():
        model = registry.load_model(f"models:/{settings.model_name}/{version}", settings)
        backtest = run_backtest(bars.bars, config, model)
        expected[alias] = {record_key(r): r for r in [*backtest.predictions, *backtest.scores]}
    # The second half of the bars comes once the first worker is killed: with all of them there, it
    # could finish before the kill (CI, a loaded machine), leaving the second nothing to run.
    half = len(bars.bars) // 2
    replay(ReadResult(bars=bars.bars[:half], rows_read=half), settings, progress=False)
    with WorkerProcess(settings, tmp_path / "worker-1.log") as worker:
        third = sum(len(expected[alias]) for alias in challengers) // 3
        wait_until(lambda: len(streamed_records(settings, settings.topic_shadow)) > third,
                   "a third of the challengers' records", worker)
        worker.stop(signal.SIGKILL)
    replay(ReadResult(bars=bars.bars[half:], rows_read=len(bars.bars) - half), settings, progress=False)
    with WorkerProcess(settings, tmp_path / "worker-2.log") as worker:
        def complete() -> bool:
            champion = {record_key(r) for r in streamed_records(settings)}
            shadow = streamed_records(settings, settings.topic_shadow)
            return champion >= expected["champion"].keys() and all(
                {record_key(r) for r in shadow if r["model_version"] == version} >= expected[alias].keys()
                for alias, version in versions.items() if alias in challengers)
        wait_until(complete, "every record of the champion and of each challenger", worker)
        page = worker.metrics()
    # The champion's records are the champion's backtest, each challenger's its own from the same
    # first bar (registered before it), at every horizon: a kill -9 changed none.
    assert_same_as_backtest(streamed_records(settings), expected["champion"])
    shadow = streamed_records(settings, settings.topic_shadow)
    assert {r["model_version"] for r in shadow} == {versions[alias] for alias in challengers}
    for alias in challengers:
        mine = [r for r in shadow if r["model_version"] == versions[alias]]
        assert_same_as_backtest(mine, expected[alias])
        assert {(r["record_type"], r["horizon"]) for r in mine} == {
            (kind, h) for kind in ("prediction", "score") for h in horizons}
    # Each challenger has its own series, labelled with its alias and version, and no other.
    for name in (*SHADOW_COUNTERS, "forecaster_shadow_panel_dm"):
        labels = set(re.findall(rf'^{name}{{alias="([^"]+)",version="([^"]+)"}} ', page, re.MULTILINE))
        assert labels == {(alias, versions[alias]) for alias in challengers}, name
    for alias in challengers:
        counted = {name: metric(page, name, alias=alias, version=versions[alias]) for name in SHADOW_COUNTERS}
        assert all(value is not None and value > 0 for value in counted.values()), (alias, counted)
