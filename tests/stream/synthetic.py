"""Synthetic bars for the worker's broker-free tests: a fixed path per ticker, no data file."""

from __future__ import annotations

import datetime as dt

from models.core.bar import Bar
from models.core.config import CoreConfig

CONFIG = CoreConfig(model="arima", window=40, refit_every=5)


def bars_of(ticker: str, n: int, start: float) -> list[Bar]:
    """``n`` weekday bars of ``ticker`` from 2020-01-06, starting at ``start``, moving by at most 1 %."""
    day, close = dt.date(2020, 1, 6), start
    bars: list[Bar] = []
    while len(bars) < n:
        if day.weekday() < 5:
            close *= 1.0 + 0.01 * ((len(bars) * 7919 % 13) - 6) / 6
            bars.append(Bar(ticker, day, close, close * 1.01, close * 0.99, close, 1000 + len(bars)))
        day += dt.timedelta(days=1)
    return bars
