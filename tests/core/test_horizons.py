"""Forecasts at several horizons: each scored by its own bar, calibrated on its own, and the default
horizon exactly as it was before horizons existed."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import random
import struct
from pathlib import Path

import numpy as np
import orjson
import pytest

from models.backtest import run_backtest
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.intervals import MIN_RESIDUALS
from models.core.state import StateDecodeError, TickerState
from models.core.step import step
from tests.core.helpers import SMALL, Reversal, run, run_in_random_batches

HORIZONS = (1, 5, 20)
V3 = json.loads((Path(__file__).parent / "state_v3_jpm.json").read_text())


def _of(records: list[dict], horizon: int) -> list[dict]:
    return [r for r in records if r["horizon"] == horizon]


def test_each_horizon_is_scored_by_the_bar_that_many_bars_later(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["EW"][:60]
    results = run(bars, CoreConfig(model="arima", horizons=HORIZONS, **SMALL))
    for k, result in enumerate(results):
        assert [p["horizon"] for p in result.predictions] == list(HORIZONS)
        assert [s["horizon"] for s in result.scores] == [h for h in HORIZONS if h <= k]
        for score in result.scores:
            h = score["horizon"]
            made = results[k - h].predictions[HORIZONS.index(h)]
            assert score["as_of"] == bars[k - h].date.isoformat()
            assert score["target_date"] == bars[k].date.isoformat()
            assert score["predicted_close"] == made["predicted_close"]
            assert score["actual_close"] == bars[k].close
            assert score["naive_close"] == bars[k - h].close
            assert score["inside_95"] == (made["lower_95"] <= bars[k].close <= made["upper_95"])
        assert len(result.state.pending) == sum(min(h, k + 1) for h in HORIZONS)
    weekly = results[10].predictions[1]  # five weekdays after a weekday: a week later
    week_later = dt.date.fromisoformat(weekly["as_of"]) + dt.timedelta(days=7)
    assert weekly["target_date"] == week_later.isoformat()


def test_each_horizon_is_calibrated_on_its_own_residuals(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["NKE"][:120]
    config = CoreConfig(model="naive", horizons=HORIZONS, **SMALL)
    results = run(bars, config)
    state = results[-1].state
    assert state.residuals.tolist() == [len(bars) - h for h in HORIZONS]
    assert state.interval_offsets.shape == (3, 2) and len(set(state.residual_sum.tolist())) == 3
    for j, h in enumerate(HORIZONS):  # naive is ready at once: warm-up is the calibration's, per horizon
        flags = [r.predictions[j]["warmup"] for r in results]
        assert flags.index(False) == h + MIN_RESIDUALS - 1  # the bar of its 20th residual
    # Nothing of a horizon leaks into another: each alone gives the same records.
    together = [r for result in results for r in result.predictions + result.scores]
    for h in HORIZONS:
        alone = [r for result in run(bars, dataclasses.replace(config, horizons=(h,)))
                 for r in result.predictions + result.scores]
        assert _of(together, h) == alone


def test_longer_horizons_have_wider_scales_and_the_arima_its_multi_step_means(
        by_ticker: dict[str, list[Bar]]) -> None:
    result = run(by_ticker["GE"][:100], CoreConfig(model="arima", horizons=HORIZONS, **SMALL))[-1]
    sigmas = [p["sigma"] for p in result.predictions]
    assert sigmas[0] < sigmas[1] < sigmas[2]
    assert 2 < sigmas[2] / sigmas[0] < 7  # about sqrt(20), with the short mean reverting
    assert len({p["predicted_close"] for p in result.predictions}) == 3


def test_an_external_model_predicts_its_one_day_return_for_every_horizon(
        by_ticker: dict[str, list[Bar]]) -> None:
    config = CoreConfig(model="external", horizons=HORIZONS, **SMALL)
    result = run(by_ticker["PM"][:20], config, Reversal())[-1]
    closes = {p["predicted_close"] for p in result.predictions}
    assert len(closes) == 1 and closes != {by_ticker["PM"][19].close}


@pytest.mark.parametrize("model_name", ["arima", "external"])
def test_batches_equal_single_steps_with_horizons(by_ticker: dict[str, list[Bar]], model_name: str) -> None:
    tickers = ["AAPL", "JPM", "GE", "NKE", "PM"]
    series = {t: by_ticker[t][:100] for t in tickers}
    config = CoreConfig(model=model_name, horizons=HORIZONS, **SMALL)
    model = Reversal() if model_name == "external" else None
    singles = {(b.ticker, b.date.isoformat()): r for t in tickers
               for b, r in zip(series[t], run(series[t], config, model), strict=True)}
    batched = run_in_random_batches([b for t in tickers for b in series[t]], config, model, random.Random(5))
    assert singles.keys() == batched.keys()
    for key, single in singles.items():
        assert batched[key].predictions == single.predictions and batched[key].scores == single.scores, key
        assert batched[key].state == single.state


def test_a_prediction_uses_nothing_after_its_bar(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["DIS"][:110]
    config = CoreConfig(model="arima", horizons=HORIZONS, **SMALL)
    cut = 90
    altered = [dataclasses.replace(b, close=b.close * 1.3, high=b.high * 1.3) for b in bars[cut + 1:]]
    base, changed = run(bars, config), run(bars[: cut + 1] + altered, config)
    for k in range(cut + 1):
        assert changed[k].predictions == base[k].predictions and changed[k].scores == base[k].scores
    assert changed[cut + 1].scores != base[cut + 1].scores


def test_backtest_reports_each_horizon(by_ticker: dict[str, list[Bar]]) -> None:
    bars = [b for t in ("JPM", "GE") for b in by_ticker[t][:80]]
    bars.sort(key=lambda b: (b.date, b.ticker))
    result = run_backtest(bars, CoreConfig(model="arima", horizons=(1, 5), **SMALL))
    assert len(result.predictions) == 2 * len(bars) == len(result.features)
    assert len(_of(result.scores, 1)) == 2 * 79 and len(_of(result.scores, 5)) == 2 * 75
    assert sorted(result.by_horizon) == [1, 5] and result.pooled == result.by_horizon[1].pooled
    assert result.by_horizon[5].pooled["n"] == sum(not s["warmup"] for s in _of(result.scores, 5))
    rows = {(r["ticker"], r["as_of"], r["horizon"]): r for r in result.rows()}
    jpm = by_ticker["JPM"]
    row = rows[("JPM", jpm[10].date.isoformat(), 5)]
    assert (row["actual_date"], row["actual_close"]) == (jpm[15].date.isoformat(), jpm[15].close)
    assert rows[("JPM", jpm[77].date.isoformat(), 5)]["actual_close"] is None


def test_default_records_are_bit_for_bit_those_before_horizons_plus_the_horizon(
        sp500_bars: list[Bar]) -> None:
    bars = [b for b in sp500_bars if b.ticker in ("JPM", "GE", "NKE")]
    result = run_backtest(bars, CoreConfig())
    records = [*result.predictions, *result.scores]
    assert all(r.pop("horizon") == 1 for r in records)
    # The digest of the same backtest's records by the core of commit f2337fc, before horizons.
    assert (len(result.predictions), len(result.scores)) == (3777, 3774)
    assert hashlib.sha256(orjson.dumps(records)).hexdigest() == (
        "0c04055a103b63623ef977315f5a1739b25d5f0c6f3c0066912f0be41eb27158")


def test_a_version_3_state_continues_as_it_would_have(by_ticker: dict[str, list[Bar]]) -> None:
    state = TickerState.from_bytes(base64.b64decode(V3["state"]))
    assert state.horizons == (1,) and [p.horizon for p in state.pending_predictions()] == [1]
    assert state.interval_offsets.shape == (1, 2) and state.residuals.tolist() == [99.0]
    assert TickerState.from_bytes(state.to_bytes()) == state
    config = CoreConfig(model="arima", window=60, refit_every=10)
    records = []
    for bar in by_ticker["JPM"][100:130]:
        result = step(state, bar, config)
        state = result.state
        records += result.scores + result.predictions
    assert all(r.pop("horizon") == 1 for r in records)
    assert records == V3["records"]


def test_a_version_3_state_meets_new_horizons_uncalibrated(by_ticker: dict[str, list[Bar]]) -> None:
    state = TickerState.from_bytes(base64.b64decode(V3["state"]))
    config = CoreConfig(model="arima", window=60, refit_every=10, horizons=(1, 5))
    result = step(state, by_ticker["JPM"][100], config)
    assert [s["horizon"] for s in result.scores] == [1]
    assert [p["warmup"] for p in result.predictions] == [False, True]
    assert result.state.residuals.tolist() == [100.0, 0.0]
    assert result.state.residual_sum[0] != 0 and result.state.residual_sum[1] == 0


def test_horizons_no_longer_configured_are_dropped(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["JPM"][:40]
    before = run(bars[:39], CoreConfig(model="naive", horizons=HORIZONS, **SMALL))[-1].state
    after = step(before, bars[39], CoreConfig(model="naive", horizons=(5,), **SMALL))
    assert [s["horizon"] for s in after.scores] == [5]
    assert [p.horizon for p in after.state.pending_predictions()] == [5] * 5
    assert after.state.residuals.tolist() == [before.residuals[1] + 1]
    restored = TickerState.from_bytes(after.state.to_bytes())
    assert restored == after.state and restored.to_bytes() == after.state.to_bytes()


def test_levels_changed_reset_the_offsets_and_the_pending_predictions_are_scored_at_theirs(
        by_ticker: dict[str, list[Bar]]) -> None:
    # As many levels as before, other ones: the offsets learnt for 0.8 and 0.95 were kept for 0.9 and 0.99.
    bars = by_ticker["JPM"][:81]
    before = run(bars[:80], CoreConfig(model="naive", interval_levels=(0.8, 0.95), **SMALL))[-1].state
    assert before.interval_offsets.any()
    config = CoreConfig(model="naive", interval_levels=(0.9, 0.99), **SMALL)
    after = step(before, bars[80], config)
    afresh = step(dataclasses.replace(before, interval_offsets=np.zeros_like(before.interval_offsets)),
                  bars[80], config)
    assert after.state.interval_offsets.tolist() == afresh.state.interval_offsets.tolist()
    assert {"inside_80", "inside_95"} <= after.scores[0].keys() and "lower_99" in after.predictions[0]


def test_corrupted_pending_predictions_are_refused(by_ticker: dict[str, list[Bar]]) -> None:
    config = CoreConfig(model="naive", horizons=(1, 5), **SMALL)
    data = run(by_ticker["JPM"][:30], config)[-1].state.to_bytes()
    header = struct.Struct("<3sBI")
    magic, version, size = header.unpack_from(data)
    meta = data[header.size : header.size + size]
    for broken in (meta.replace(b'"pending":[[', b'"pending":[[1,', 1),  # a field too many
                   meta.replace(b'"pending":[[', b'"pending":[["soon",', 1).replace(b'"2013', b'"x', 1)):
        with pytest.raises(StateDecodeError, match="corrupted"):
            arrays = data[header.size + size :]
            TickerState.from_bytes(header.pack(magic, version, len(broken)) + broken + arrays)
