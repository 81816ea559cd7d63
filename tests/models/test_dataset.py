"""The training set is made by the streaming core and is causal: a day's row never sees a later bar."""

from __future__ import annotations

import datetime as dt

import numpy as np

from models.core.config import CoreConfig
from models.dataset import FeatureTable, feature_table
from producers.readers import read_csv_bars

CONFIG = CoreConfig(model="arima", window=64, refit_every=5)


def _bars(data_dir, start: dt.date):
    return read_csv_bars([data_dir / "sp500-5yr-sample.csv.gz"], tickers=["APH", "KO"], start=start).bars


def test_rows_do_not_change_when_later_bars_are_removed(data_dir) -> None:
    bars = _bars(data_dir, dt.date(2017, 1, 1))
    cut = dt.date(2017, 9, 1)
    full = feature_table(bars, CONFIG)
    early = feature_table([b for b in bars if b.date <= cut], CONFIG)
    kept = full.dates <= np.datetime64(cut)
    # arima_residual included: the same incremental ARIMA, refitted on past windows only.
    np.testing.assert_array_equal(early.features, full.features[kept])
    assert early.features[:, list(full.feature_names).index("arima_residual")].any()


def test_windows_stay_within_one_ticker_and_targets_are_next_day_returns(data_dir) -> None:
    bars = _bars(data_dir, dt.date(2017, 6, 1))
    table = feature_table(bars, CONFIG)
    samples = table.samples(lookback=5)
    for ticker in ("APH", "KO"):
        closes = {b.date: b.close for b in bars if b.ticker == ticker}
        days = sorted(closes)
        mine = samples.select(samples.tickers == ticker)
        # Each ticker's first row has no previous close (NaN changes): windows start after it.
        assert len(mine) == len(days) - 1 - 5
        for date, target, ret in zip(mine.dates[:3], mine.target_dates[:3], mine.returns[:3], strict=True):
            t, t1 = date.astype(dt.date), target.astype(dt.date)
            assert days.index(t1) == days.index(t) + 1
            assert ret == np.log(closes[t1] / closes[t])
        rows = table.features[table.tickers == ticker]
        np.testing.assert_array_equal(mine.windows[0], rows[1:6])


def test_test_history_round_trips_through_npz(tmp_path, data_dir) -> None:
    path = data_dir / "sp500-5yr-sample.csv.gz"
    bars = read_csv_bars([path], tickers=["APH"], start=dt.date(2017, 6, 1)).bars
    table = feature_table(bars, CONFIG)
    first, last = dt.date(2017, 12, 1), dt.date(2018, 1, 31)
    part = table.history_for(first, last, history=9)
    part.save(tmp_path / "t.npz")
    loaded = FeatureTable.load(tmp_path / "t.npz")
    expected = table.samples(10).between(first, last)
    got = loaded.samples(10).between(first, last)
    assert len(got) == len(expected) > 30
    np.testing.assert_array_equal(got.windows, expected.windows)
    assert loaded.feature_names == table.feature_names
