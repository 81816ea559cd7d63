"""Registry round trips, promotion decisions and the champion hot-reload building block.

The ARIMA family needs no training and is deterministic, which makes it the family these tests
promote. On APH's last 60 days the ARIMA(1,1,0) and ARIMA(2,1,0) forecasts have a lower MAE than
naive and (0,1,1) a higher one (relative MAE 0.988, 0.929, 1.008 with a 64-return window).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from forecaster.cli import main
from forecaster.kafka.broker import free_port
from forecaster.settings import Settings
from models import registry
from models.core.bar import Bar
from models.core.features import FEATURE_NAMES
from models.training import train


def _train_arima(bars, settings, order):
    return train(bars, "arima", settings, experiment="registry-test",
                 params={"order": order, "lookback": 64}, test_days=60)


def test_promotion_moves_the_champion_only_when_the_candidate_wins(aph_bars, store) -> None:
    assert registry.champion_version(store) is None
    assert registry.load_champion(store) is None

    first = _train_arima(aph_bars, store, [1, 1, 0])
    assert first.evaluation.panel.relative_mae < 1
    decision = registry.promote(store, store.model_name)
    assert decision.promoted and decision.champion is None
    assert registry.champion_version(store) == first.version
    champion = registry.load_champion(store)
    assert (champion.name, champion.version, champion.lookback) == ("arima", first.version, 64)

    worse = _train_arima(aph_bars, store, [0, 1, 1])
    refused = registry.promote(store, store.model_name, worse.version)
    assert not refused.promoted
    assert any("not below naive" in reason for reason in refused.reasons)
    assert registry.champion_version(store) == first.version

    better = _train_arima(aph_bars, store, [2, 1, 0])
    decision = registry.promote(store, store.model_name)
    assert decision.promoted and decision.champion == first.version
    scores = decision.scores
    assert (scores[f"champion v{first.version}"]["relative_mae"]
            > scores[f"candidate v{better.version}"]["relative_mae"])
    assert decision.tickers == 1 and decision.wins == {"naive": 1, f"champion v{first.version}": 1}
    # What the worker's reload loop sees: a new version behind the same alias, loaded natively.
    assert registry.champion_version(store) == better.version
    reloaded = registry.load_champion(store)
    assert (reloaded.version, reloaded.params["order"]) == (better.version, [2, 1, 0])

    again = registry.promote(store, store.model_name, first.version)
    assert not again.promoted
    assert any(f"not below champion version {better.version}" in reason for reason in again.reasons)
    assert registry.champion_version(store) == better.version


def _panel_bars(c_price: float) -> list[Bar]:
    """300 weekdays of three tickers: A and B with autocorrelated returns (AR(1), 0.5 and -0.5) that
    ARIMA(2,1,0) forecasts better than naive, C a random walk it forecasts worse (seeded so that on
    the last 60 days its relative MAE is 1.03), C priced at ``c_price``."""
    rng = np.random.default_rng(7)
    days = [d for d in (dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(420)) if d.weekday() < 5]
    bars = []
    for ticker, phi, price in (("A", 0.5, 40.0), ("B", -0.5, 60.0), ("C", 0.0, c_price)):
        noise = 0.01 * rng.normal(size=len(days))
        returns = np.zeros(len(days))
        for i in range(1, len(days)):
            returns[i] = phi * returns[i - 1] + noise[i]
        closes = price * np.exp(np.cumsum(returns))
        opens = np.r_[closes[0], closes[:-1]]
        bars += [Bar(ticker, day, o, max(o, c) * 1.002, min(o, c) * 0.998, c, v)
                 for day, o, c, v in zip(days, opens, closes, rng.uniform(1e5, 2e5, len(days)), strict=True)]
    return bars


def test_one_tickers_price_scale_does_not_decide_the_promotion(store) -> None:
    decisions = []
    for c_price in (5.0, 500.0):
        settings = store.replace(model_name=f"{store.model_name}-c{c_price:.0f}")
        outcome = _train_arima(_panel_bars(c_price), settings, [2, 1, 0])
        assert [round(t.relative_mae, 2) for t in outcome.evaluation.per_ticker] == [0.84, 0.9, 1.03]
        decisions.append(registry.promote(settings, settings.model_name, significance=0.05))
    cheap, dear = decisions
    candidate = f"candidate v{cheap.candidate}"
    # Pooled dollars would decide on C once it is dear: the old rule promoted one and refused the other.
    assert cheap.scores[candidate]["mae"] < cheap.scores["naive"]["mae"]
    assert dear.scores[candidate]["mae"] > dear.scores["naive"]["mae"]
    assert cheap.promoted and dear.promoted
    for key in ("relative_mae", "mase", "panel_dm_p_value"):
        assert dear.scores[candidate][key] == pytest.approx(cheap.scores[candidate][key], rel=1e-9)
    assert cheap.tickers == dear.tickers == 3 and cheap.wins == dear.wins == {"naive": 2}
    assert "the candidate's MAE is below naive's on 2 of 3 tickers" in dear.summary()


def test_already_champion_and_significance_refusals(aph_bars, store) -> None:
    outcome = _train_arima(aph_bars, store, [2, 1, 0])
    strict = registry.promote(store, store.model_name, significance=0.01)
    assert not strict.promoted
    assert any("not significantly better than naive at 0.01" in reason for reason in strict.reasons)
    assert registry.promote(store, store.model_name).promoted
    repeat = registry.promote(store, store.model_name, outcome.version)
    assert not repeat.promoted and repeat.reasons == [f"version {outcome.version} is already the champion"]


def test_reference_of_the_champion_is_the_training_period_distribution(aph_bars, store) -> None:
    assert registry.load_reference(store) is None
    outcome = _train_arima(aph_bars, store, [2, 1, 0])
    registry.promote(store, store.model_name)
    reference = registry.load_reference(store)
    assert set(reference) == set(FEATURE_NAMES)
    for bins in reference.values():
        assert len(bins["proportions"]) == len(bins["edges"]) + 1
        assert sum(bins["proportions"]) == pytest.approx(1.0)
    # Quantile bins of the training rows hold about 10 % each; the test period is not part of them.
    assert max(reference["log_return"]["proportions"]) < 0.15
    assert outcome.split.train_end < outcome.split.test_start


def test_xgboost_round_trip_predicts_like_the_trained_model(aph_bars, store) -> None:
    outcome = train(aph_bars, "xgboost", store, experiment="registry-test", test_days=60,
                    params={"n_estimators": 20})
    loaded = registry.load_model(f"models:/{store.model_name}/{outcome.version}", store)
    windows = np.random.default_rng(0).normal(size=(16, 1, len(FEATURE_NAMES)))
    assert (loaded.name, loaded.version) == ("xgboost", outcome.version)
    np.testing.assert_array_equal(loaded.predict_returns(windows), outcome.model.predict_returns(windows))


def test_load_model_rejects_bad_uris(store) -> None:
    with pytest.raises(ValueError, match="expected models:/NAME@ALIAS"):
        registry.load_model("runs:/abc/model", store)
    with pytest.raises(ValueError, match="is not in the registry"):
        registry.load_model("models:/nothing-here/1", store)


def test_cli_train_and_promote(data_dir, store, monkeypatch, capsys) -> None:
    for key, value in {"FORECASTER_HOME": store.home, "FORECASTER_MODEL_NAME": store.model_name,
                       "FORECASTER_WINDOW": "64"}.items():
        monkeypatch.setenv(key, value)
    path = str(data_dir / "sp500-5yr-sample.csv.gz")
    code = main(["train", path, "--model", "arima", "--tickers", "APH", "--test-start", "2017-11-10",
                 "--params", '{"order": [0, 1, 1], "lookback": 64}', "--experiment", "cli-test"])
    out = capsys.readouterr().out
    assert code == 0 and "does not beat naive" in out and f"registered {store.model_name} version 1" in out
    assert main(["promote", store.model_name]) == 1
    out = capsys.readouterr().out
    assert "rule: candidate relative MAE" in out and "not promoted" in out
    assert "the candidate's MAE is below naive's on 0 of 1 tickers" in out
    assert registry.champion_version(store) is None


def test_a_training_run_logs_metrics_plots_reference_test_set_and_params(aph_bars, store) -> None:
    outcome = _train_arima(aph_bars, store, [1, 1, 0])
    mlflow_client = registry.client(store)
    run = mlflow_client.get_run(outcome.run_id)
    artifacts = {a.path for a in mlflow_client.list_artifacts(outcome.run_id)}
    logged = {"predicted_vs_actual.png", "error_distribution.png", "reference.json", "test_set.npz",
              "per_ticker.json", "naive_scales.json"}
    assert logged <= artifacts
    metrics = run.data.metrics
    for name in ("mae", "rmse", "mse", "mape", "r2", "directional_accuracy"):
        assert metrics[f"test_{name}"] == pytest.approx(outcome.evaluation.metrics[name])
    panel = outcome.evaluation.panel
    for name, value in panel.metrics().items():
        assert metrics[f"test_{name}"] == pytest.approx(value)
    (aph,) = outcome.evaluation.per_ticker
    assert metrics["test_relative_mae"] == pytest.approx(aph.mae / aph.naive_mae)
    assert metrics["test_mase"] == pytest.approx(aph.mase)
    assert metrics["naive_mase"] == pytest.approx(aph.naive_mase)
    assert metrics["naive_mae"] == pytest.approx(outcome.evaluation.naive_metrics["mae"])
    assert 0 < metrics["panel_dm_p_value"] <= 1
    assert run.data.params["family"] == "arima" and run.data.params["test_end"] == str(outcome.split.test_end)


def test_the_core_serving_a_loaded_model_predicts_what_training_scored(aph_bars, store) -> None:
    from models.backtest import run_backtest
    from models.core.config import CoreConfig

    outcome = train(aph_bars, "xgboost", store, experiment="registry-test", test_days=60,
                    params={"n_estimators": 20})
    served = registry.load_model(f"models:/{store.model_name}/{outcome.version}", store)
    result = run_backtest(aph_bars, CoreConfig.from_settings(store, model="external"), served)
    scores = [s for s in result.scores if str(outcome.split.test_start) <= s["target_date"]
              <= str(outcome.split.test_end)]
    assert len(scores) == outcome.counts["test"] and not any(s["warmup"] for s in scores)
    assert {s["model_version"] for s in scores} == {outcome.version}
    predicted = np.array([s["predicted_close"] for s in scores])
    np.testing.assert_allclose(predicted, outcome.evaluation.predicted_closes, rtol=1e-12)


def test_an_unreadable_store_is_no_answer_not_no_champion(store, tmp_path) -> None:
    # A SQLite file that is not a database: whether a champion exists is not known, and the
    # caller is told so (it keeps the champion it has) rather than given "no champion".
    home = tmp_path / "broken"
    (home / "mlflow").mkdir(parents=True)
    (home / "mlflow" / "mlflow.db").write_bytes(b"\x00not a database\xff" * 300)
    broken = store.replace(home=str(home))
    with pytest.raises(registry.RegistryUnavailable, match="did not answer: DatabaseError") as raised:
        registry.champion_version(broken)
    assert str(home) not in str(raised.value)
    assert registry.champion_version(store) is None  # a store that answers, without the model


def test_a_registry_failing_during_a_promotion_moves_nothing(aph_bars, store, monkeypatch) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    champion = _train_arima(aph_bars, store, [2, 1, 0])
    assert registry.promote(store, store.model_name).promoted
    # Better than naive, worse than the champion: compared with naive alone, it would be promoted.
    candidate = _train_arima(aph_bars, store, [1, 1, 0])

    def unavailable(self, name, alias):
        raise MlflowException("API request failed with status 503")

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", unavailable)
    with pytest.raises(registry.RegistryUnavailable, match="did not answer: MlflowException"):
        registry.promote(store, store.model_name, candidate.version)
    monkeypatch.undo()
    assert registry.champion_version(store) == champion.version


def test_reading_a_registry_that_does_not_exist_creates_none(tmp_path: Path) -> None:
    # `promote` and `backtest --model models:/...` on a fresh home made a 1 MB MLflow database (and the
    # folders of a mistyped URI) to say that it held nothing.
    settings = Settings(home=str(tmp_path / "home"))
    with pytest.raises(ValueError, match="no store exists there yet"):
        registry.promote(settings, settings.model_name)
    with pytest.raises(ValueError, match=r"is not in the registry at .*: no store exists there yet"):
        registry.load_model(f"models:/{settings.model_name}/1", settings)
    assert not (tmp_path / "home").exists()


def test_a_registry_out_of_reach_is_not_taken_for_one_without_the_model(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = Settings(home=str(tmp_path), mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(MlflowException, match="API request to"):  # not "no registered model"
        registry.promote(settings, settings.model_name)
