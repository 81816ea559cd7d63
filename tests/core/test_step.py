"""One step: records, warm-up, scoring, refusals, and batches equal to single steps."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest

from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.step import (
    BatchError,
    ModelError,
    OutOfOrderBar,
    StepFailure,
    StepResult,
    step,
    step_guarded,
    step_many,
)
from tests.core.helpers import SMALL, Reversal, fail_step_when, run, run_in_random_batches

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
@pytest.mark.parametrize("model_name", ["naive", "arima", "external"])
def test_batches_of_any_composition_equal_single_steps(by_ticker: dict[str, list[Bar]],
                                                       model_name: str) -> None:
    tickers = ["AAPL", "JPM", "GE", "NKE", "PM", "XRX", "DIS", "EW"]
    series = {t: by_ticker[t][:130] for t in tickers}
    bars = [b for t in tickers for b in series[t]]
    config = CoreConfig(model=model_name, **SMALL)
    single_model = Reversal() if model_name == "external" else None
    batched_model = Reversal() if model_name == "external" else None
    singles = {(b.ticker, b.date.isoformat()): r for t in tickers
               for b, r in zip(series[t], run(series[t], config, single_model), strict=True)}
    batched = run_in_random_batches(bars, config, batched_model, random.Random(11))
    assert singles.keys() == batched.keys()
    for key, single in singles.items():
        other = batched[key]
        assert other.predictions == single.predictions, key
        assert other.scores == single.scores, key
        assert other.refit == single.refit
        np.testing.assert_array_equal(other.features, single.features)
        assert other.state == single.state
    if batched_model is not None:  # one call per batch that had a ready ticker, never one per ticker
        assert max(batched_model.calls) > 1 and max(single_model.calls) == 1


def test_warmup_falls_back_to_naive_until_the_window_is_full(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["NKE"][:100]
    results = run(bars, CoreConfig(model="arima", **SMALL))
    for bar, result in zip(bars[:59], results[:59], strict=True):
        assert result.predictions[0]["warmup"] is True
        assert result.predictions[0]["predicted_close"] == bar.close
        assert (result.predictions[0]["model"], result.predictions[0]["model_version"]) == ("arima", "2,1,0")
    assert results[59].refit == "ok"
    assert all(not r.predictions[0]["warmup"] for r in results[59:])
    assert all(r.predictions[0]["predicted_close"] != b.close
               for b, r in zip(bars[59:], results[59:], strict=True))


def test_external_model_predicts_from_its_lookback_of_features(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["PM"][:20]
    model = Reversal()
    results = run(bars, CoreConfig(model="external", **SMALL), model)
    # Feature rows start at the second bar, so three rows exist from the fourth bar on.
    naive = [r.predictions[0]["predicted_close"] == b.close
             for b, r in zip(bars[:4], results[:4], strict=True)]
    assert naive == [True, True, True, False]
    expected = bars[10].close * np.exp(-0.1 * np.log(bars[10].close / bars[9].close))
    assert results[10].predictions[0]["predicted_close"] == pytest.approx(expected, rel=1e-12)
    made = results[10].predictions[0]
    assert made["model"] == "reversal" and made["model_version"] == "7"


def test_score_checks_the_previous_prediction_against_the_next_bar(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["DIS"][:80]
    results = run(bars, CoreConfig(model="arima", **SMALL))
    assert results[0].scores == []
    before, after = results[69], results[70]
    score, made = after.scores[0], before.predictions[0]
    assert score is not None
    assert (score["as_of"], score["target_date"]) == (bars[69].date.isoformat(), bars[70].date.isoformat())
    assert score["predicted_close"] == made["predicted_close"] and score["actual_close"] == bars[70].close
    assert score["error"] == pytest.approx(bars[70].close - made["predicted_close"])
    assert score["naive_close"] == bars[69].close
    assert score["naive_error"] == pytest.approx(bars[70].close - bars[69].close)
    for label in ("80", "95"):
        lower, upper = made[f"lower_{label}"], made[f"upper_{label}"]
        assert score[f"inside_{label}"] == (lower <= bars[70].close <= upper)
        assert score[f"width_{label}"] == pytest.approx(upper - lower)
        assert score[f"winkler_{label}"] >= score[f"width_{label}"]


def test_score_target_is_the_bar_that_arrived_whatever_its_date(by_ticker: dict[str, list[Bar]]) -> None:
    first, _, third = by_ticker["EW"][:3]  # skip a bar: the prediction made at `first` meets `third`
    config = CoreConfig(model="naive")
    made = step(None, first, config)
    scored = step(made.state, third, config)
    assert made.predictions[0]["target_date"] != third.date.isoformat()
    assert scored.scores and scored.scores[0]["target_date"] == third.date.isoformat()


def test_records_follow_their_schemas_and_are_plain_json(by_ticker: dict[str, list[Bar]]) -> None:
    validators = {name: jsonschema.Draft202012Validator(
        json.loads((SCHEMAS / f"{name}.schema.json").read_text())) for name in ("prediction", "score")}
    config = CoreConfig(model="arima", interval_levels=(0.5, 0.8, 0.975), **SMALL)
    results = run(by_ticker["XRX"][:90], config)
    for result in results:
        records = result.predictions + result.scores
        for record in records:
            validators[record["record_type"]].validate(record)
            assert orjson.loads(orjson.dumps(record)) == record
            assert all(type(v) in (str, float, bool) for k, v in record.items()
                       if k not in ("vol_regime", "horizon"))
            assert type(record["horizon"]) is int
            assert record["vol_regime"] in ("calm", "middle", "volatile", None)
    assert {"lower_97.5", "upper_97.5", "lower_50"} <= results[-1].predictions[0].keys()
    assert {"inside_97.5", "winkler_50"} <= results[-1].scores[0].keys()
    p = results[-1].predictions[0]
    assert p["lower_97.5"] < p["lower_80"] < p["lower_50"] < p["predicted_close"]
    assert p["predicted_close"] < p["upper_50"] < p["upper_80"] < p["upper_97.5"]


def test_target_date_is_the_next_weekday_and_numbers_are_floats() -> None:
    config = CoreConfig(model="naive")
    friday = Bar("X", dt.date(2024, 3, 1), 10, 10, 10, 10, 0)  # ints, as code (not a reader) may pass
    saturday = Bar("X", dt.date(2024, 3, 2), 11, 11, 11, 11, 0)
    made = step(None, friday, config)
    assert made.predictions[0]["target_date"] == "2024-03-04"
    scored = step(made.state, saturday, config)
    assert scored.predictions[0]["target_date"] == "2024-03-04"
    for record in (made.predictions[0], scored.predictions[0], scored.scores[0]):
        assert all(type(v) is float for k, v in record.items() if k not in ("ticker", "as_of", "target_date",
                   "record_type", "model", "model_version", "warmup", "vol_regime", "horizon")
                   and not k.startswith("inside_")), record


def test_batches_refuse_what_cannot_be_applied_and_apply_nothing(by_ticker: dict[str, list[Bar]]) -> None:
    config = CoreConfig(model="naive")
    a0, a1 = by_ticker["AAPL"][:2]
    j0, j1 = by_ticker["JPM"][:2]
    sa = step(None, a1, config).state
    with pytest.raises(OutOfOrderBar, match="AAPL bar of 2013-02-08 is not after"):
        step_many([None, sa], [j0, a0], config)
    with pytest.raises(ValueError, match="one bar per ticker"):
        step_many([None, None], [a0, a0], config)
    with pytest.raises(ValueError, match="bar of 'JPM' given with the state of 'AAPL'"):
        step(sa, j1, config)
    with pytest.raises(ValueError, match=r"exactly when config\.model is 'external'"):
        step(None, a0, config, Reversal())
    with pytest.raises(ValueError, match=r"exactly when config\.model is 'external'"):
        step(None, a0, CoreConfig(model="external"))
    with pytest.raises(ValueError, match="2 states for 1 bars"):
        step_many([None, None], [a0], config)
    assert step_many([], [], config) == []


def test_a_bar_the_step_raises_on_is_set_aside_and_the_others_are_stepped_as_ever(
        by_ticker: dict[str, list[Bar]], monkeypatch: pytest.MonkeyPatch) -> None:
    config = CoreConfig(model="arima", **SMALL)
    tickers = ["AAPL", "JPM", "GE", "NKE", "A"]
    states = [run(by_ticker[t][:70], config)[-1].state for t in tickers]
    bars = [by_ticker[t][70] for t in tickers]
    expected = step_many(states, bars, config)
    fail_step_when(monkeypatch, lambda batch, model: bars[1] in batch or bars[3] in batch)
    got = step_guarded(states, bars, config)
    assert [type(r).__name__ for r in got] == ["StepResult", "StepFailure", "StepResult", "StepFailure",
                                               "StepResult"]
    def outcome(result: StepResult) -> tuple:
        return result.predictions, result.scores, result.state.to_bytes()

    stepped = [outcome(r) for r in got if not isinstance(r, StepFailure)]
    assert stepped == [outcome(expected[i]) for i in (0, 2, 4)]
    failure = got[1]
    assert isinstance(failure, StepFailure) and failure.bar is bars[1]
    assert failure.reason == "step_failed"
    assert failure.error.__context__ is None  # not chained to its batches' errors: one traceback to log
    assert failure.detail == (f"JPM {bars[1].date.isoformat()}: the forecasting step raised "
                              "ZeroDivisionError: a bug of the core; not applied, the ticker's state stays "
                              "at its last applied bar")


def test_the_callers_and_the_models_errors_are_not_set_aside(by_ticker: dict[str, list[Bar]]) -> None:
    config = CoreConfig(model="naive")
    a0, a1 = by_ticker["AAPL"][:2]
    later = step(None, a1, config).state
    with pytest.raises(BatchError, match="one bar per ticker"):
        step_guarded([None, None], [a0, a0], config)
    with pytest.raises(OutOfOrderBar):
        step_guarded([later], [a0], config)

    class Unnamed:  # no lookback, no name: a caller's mistake, not a bar's
        def predict_returns(self, windows: np.ndarray) -> np.ndarray:
            return windows[:, -1, 0]

    with pytest.raises(BatchError, match="lookback must be a positive int; got None"):
        step_guarded([None], [a0], CoreConfig(model="external"), Unnamed())  # type: ignore[arg-type]

    class Failing(Reversal):
        def predict_returns(self, windows: np.ndarray) -> np.ndarray:
            raise RuntimeError("the model's own bug")

    external = CoreConfig(model="external")
    states = [run(by_ticker[t][:5], external, Reversal())[-1].state for t in ("AAPL", "JPM")]
    with pytest.raises(ModelError, match="the model's own bug"):
        step_guarded(states, [by_ticker["AAPL"][5], by_ticker["JPM"][5]], external, Failing())


def test_a_model_promoted_mid_stream_predicts_at_once_when_its_lookback_fits(
        by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["GE"][:80]
    before = run(bars[:70], CoreConfig(model="arima", **SMALL))[-1].state
    assert len(before.features) == CoreConfig().feature_history
    swapped = step(before, bars[70], CoreConfig(model="external", **SMALL), Reversal())
    assert not swapped.predictions[0]["warmup"] and swapped.predictions[0]["model"] == "reversal"

    class Long(Reversal):
        lookback = 40  # longer than the history kept: warms up, then keeps 40 rows

    results = run(bars, CoreConfig(model="external", **SMALL), Long())
    assert [r.predictions[0]["warmup"] for r in results].index(False) == 40
    assert len(results[-1].state.features) == 40


def test_a_model_output_that_is_not_finite_gets_the_flagged_naive_forecast(
        by_ticker: dict[str, list[Bar]]) -> None:
    class Broken(Reversal):
        def predict_returns(self, windows: np.ndarray) -> np.ndarray:
            returns = super().predict_returns(windows)
            returns[0] = np.nan
            return returns

    bars = [by_ticker["GE"][30], by_ticker["JPM"][30]]
    states = [run(by_ticker[t][:30], CoreConfig(model="naive", **SMALL))[-1].state for t in ("GE", "JPM")]
    broken, fine = step_many(states, bars, CoreConfig(model="external", **SMALL), Broken())
    assert broken.predictions[0]["warmup"] and broken.predictions[0]["predicted_close"] == bars[0].close
    assert not fine.predictions[0]["warmup"] and fine.predictions[0]["predicted_close"] != bars[1].close
