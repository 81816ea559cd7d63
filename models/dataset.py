"""Training data made by the streaming core itself: causal feature rows, windows and next-day targets.

:func:`feature_table` runs :func:`models.core.step.step` over each ticker's bars in date order and
keeps the feature row it computes for every day: the ``arima_residual`` column therefore comes from
the same incremental ARIMA (same window, same refits) the stream worker runs, never from a fit over
the whole series. :meth:`FeatureTable.samples` cuts the rows into model windows (the last row is
day t) with the target ``log(close[t+1] / close[t])``, never crossing from one ticker to another.

Examples
--------
>>> days = np.array(["2024-01-0%d" % d for d in (1, 2, 3, 4, 1, 2, 3)], dtype="datetime64[D]")
>>> table = FeatureTable(features=np.arange(14.0).reshape(7, 2), tickers=np.array(["A"] * 4 + ["B"] * 3),
...                      dates=days, closes=np.array([10.0, 11, 12, 13, 5, 6, 7]), feature_names=("x", "y"))
>>> s = table.samples(lookback=2)
>>> s.tickers.tolist(), s.windows[:, -1, 0].tolist(), np.round(np.exp(s.returns), 4).tolist()
(['A', 'A', 'B'], [2.0, 4.0, 10.0], [1.0909, 1.0833, 1.1667])
>>> [str(d) for d in s.target_dates]
['2024-01-03', '2024-01-04', '2024-01-03']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.features import FEATURE_NAMES
from models.core.step import step


@dataclass(frozen=True)
class Samples:
    """Model windows with their targets and what is needed to turn returns into closes."""

    windows: np.ndarray       # [n, lookback, features], oldest row first, last row = day t
    returns: np.ndarray       # [n] log(close[t+1] / close[t]): the training target
    closes: np.ndarray        # [n] close of day t: the naive forecast
    next_closes: np.ndarray   # [n] close of the target day
    tickers: np.ndarray       # [n]
    dates: np.ndarray         # [n] day t, datetime64[D]
    target_dates: np.ndarray  # [n] the target day, datetime64[D]

    def __len__(self) -> int:
        return len(self.returns)

    def select(self, mask: np.ndarray) -> Samples:
        """The samples where ``mask`` holds."""
        return Samples(*(getattr(self, name)[mask] for name in self.__dataclass_fields__))

    def between(self, first: dt.date, last: dt.date) -> Samples:
        """The samples whose target date is in ``[first, last]``."""
        days = self.target_dates
        return self.select((days >= np.datetime64(first, "D")) & (days <= np.datetime64(last, "D")))


@dataclass(frozen=True)
class FeatureTable:
    """Every ticker-day's feature row, grouped by ticker, dates increasing within a ticker."""

    features: np.ndarray  # [m, len(feature_names)]
    tickers: np.ndarray   # [m]
    dates: np.ndarray     # [m] datetime64[D]
    closes: np.ndarray    # [m]
    feature_names: tuple[str, ...]

    def samples(self, lookback: int) -> Samples:
        """Every window of ``lookback`` finite rows of one ticker that has a next day to predict."""
        if lookback < 1:
            raise ValueError(f"lookback must be positive, got {lookback}")
        ends = []
        finite = np.isfinite(self.features).all(axis=1)
        for ticker in dict.fromkeys(self.tickers.tolist()):
            rows = np.flatnonzero(self.tickers == ticker)
            ok = finite[rows]
            # A window ends at row i when rows i-lookback+1..i are all finite and row i+1 exists.
            run = np.convolve(ok, np.ones(lookback, dtype=int), mode="full")[: len(rows)]
            good = np.flatnonzero(run[:-1] == lookback) if len(rows) > 1 else np.empty(0, dtype=int)
            ends.append(rows[good])
        end = np.concatenate(ends) if ends else np.empty(0, dtype=int)
        index = end[:, None] + np.arange(1 - lookback, 1)[None, :]
        return Samples(
            windows=self.features[index].astype("float64"),
            returns=np.log(self.closes[end + 1] / self.closes[end]),
            closes=self.closes[end], next_closes=self.closes[end + 1],
            tickers=self.tickers[end], dates=self.dates[end], target_dates=self.dates[end + 1],
        )

    def history_for(self, first_target: dt.date, last_target: dt.date, history: int) -> FeatureTable:
        """The rows that samples with targets in ``[first_target, last_target]`` can read.

        Keeps ``history`` rows before each ticker's first such day t, so that windows of up to
        ``history + 1`` rows can be cut from the result.
        """
        keep = np.zeros(len(self.tickers), dtype=bool)
        first, last = np.datetime64(first_target, "D"), np.datetime64(last_target, "D")
        for ticker in dict.fromkeys(self.tickers.tolist()):
            rows = np.flatnonzero(self.tickers == ticker)
            days = self.dates[rows]
            targets = np.flatnonzero((days >= first) & (days <= last))
            if targets.size:
                keep[rows[max(targets[0] - 1 - history, 0): targets[-1] + 1]] = True
        return FeatureTable(self.features[keep], self.tickers[keep], self.dates[keep], self.closes[keep],
                            self.feature_names)

    def save(self, path: str | Path) -> None:
        """Write the table as a compressed ``.npz``."""
        np.savez_compressed(path, features=self.features, tickers=self.tickers.astype(str),
                            dates=self.dates.astype("datetime64[D]").astype(str), closes=self.closes,
                            feature_names=np.array(self.feature_names))

    @classmethod
    def load(cls, path: str | Path) -> FeatureTable:
        """Read a table written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls(features=data["features"], tickers=data["tickers"],
                       dates=data["dates"].astype("datetime64[D]"), closes=data["closes"],
                       feature_names=tuple(data["feature_names"].tolist()))


def feature_table(bars: Iterable[Bar], config: CoreConfig) -> FeatureTable:
    """Run the core's ``step`` over each ticker's bars in date order; collect each day's features.

    Parameters
    ----------
    bars
        Validated bars, any order; several tickers allowed.
    config
        A :class:`~models.core.config.CoreConfig` (its ARIMA makes the ``arima_residual`` column).
    """
    by_ticker: dict[str, list[Bar]] = {}
    for bar in bars:
        by_ticker.setdefault(bar.ticker, []).append(bar)
    if not by_ticker:
        raise ValueError("no bars to make features from")
    features, tickers, dates, closes = [], [], [], []
    for ticker, series in by_ticker.items():
        state = None
        for bar in sorted(series, key=lambda b: b.date):
            result = step(state, bar, config)
            state = result.state
            features.append(result.features)
            tickers.append(ticker)
            dates.append(bar.date)
            closes.append(bar.close)
    return FeatureTable(features=np.vstack(features).astype("float64"), tickers=np.array(tickers),
                        dates=np.array(dates, dtype="datetime64[D]"),
                        closes=np.array(closes, dtype="float64"), feature_names=FEATURE_NAMES)
