"""Score records: each prediction checked against the close of the ticker's bar it predicted (the
``horizon``-th bar after the one it was made at).

A score says how far the prediction was (error, absolute percentage error), how far the naive
forecast of the same day was, and for each interval level whether the close fell inside, the
interval's width and its Winkler score. It also yields what the ticker's calibration learns from
the outcome: the standardized residual (log error / the prediction's scale).

Examples
--------
>>> import datetime as dt
>>> from models.core.bar import Bar
>>> made = LastPrediction(as_of=dt.date(2024, 1, 5), horizon=1, log_centre=float(np.log(10.0)), scale=0.02,
...                       predicted_close=10.0, naive_close=9.9, levels=(0.8,), lower=(9.8,), upper=(10.2,),
...                       model="naive", model_version="1", warmup=False, vol_regime=None)
>>> bar = Bar("ACME", dt.date(2024, 1, 8), 10.0, 10.5, 10.0, 10.3, 100.0)
>>> records, standardized = score([made], [bar], np.log([10.3]), IsoDates())
>>> {k: records[0][k] for k in ("as_of", "target_date", "horizon", "error", "inside_80")}
... # doctest: +NORMALIZE_WHITESPACE
{'as_of': '2024-01-05', 'target_date': '2024-01-08', 'horizon': 1, 'error': 0.3000000000000007,
 'inside_80': False}
>>> round(records[0]["width_80"], 6), round(records[0]["winkler_80"], 6)  # 0.4 + 2 / 0.2 * 0.1
(0.4, 1.4)
>>> round(float(standardized[0]), 4)  # log(10.3 / 10) / 0.02
1.4779
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np

from models.core.bar import Bar
from models.core.intervals import level_label
from models.core.metrics import winkler
from models.core.state import LastPrediction


class IsoDates(dict[dt.date, str]):
    """``date -> shift(date)`` as ``"YYYY-MM-DD"``, computed once per date (a batch is mostly one day)."""

    def __init__(self, shift: Callable[[dt.date], dt.date] = lambda day: day) -> None:
        super().__init__()
        self.shift = shift

    def __missing__(self, day: dt.date) -> str:
        text = self[day] = self.shift(day).isoformat()
        return text


def score(made: Sequence[LastPrediction], bars: Sequence[Bar], log_close: np.ndarray,
          iso: IsoDates) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Score records of predictions ``made`` against the ``bars`` that followed them, batched.

    ``log_close`` is the log of the bars' closes. Returns the records (encodings of
    :class:`~models.core.records.Score`) and the standardized residuals, each in the order given.
    """
    log_error = log_close - np.array([p.log_centre for p in made])
    standardized = log_error / np.array([p.scale for p in made])
    records: list[dict[str, Any]] = [{} for _ in made]
    # Group by the levels the predictions were made with (one group unless the levels setting changed).
    groups: dict[tuple[float, ...], list[int]] = {}
    for j, p in enumerate(made):
        groups.setdefault(p.levels, []).append(j)
    for levels, members in groups.items():
        actual = np.array([bars[j].close for j in members])[:, None]
        lower = np.array([made[j].lower for j in members])
        upper = np.array([made[j].upper for j in members])
        inside = ((lower <= actual) & (actual <= upper)).tolist()
        width = (upper - lower).tolist()
        interval_score = winkler(actual, lower, upper, np.array(levels)).tolist()
        keys = _keys(levels)
        for k, j in enumerate(members):
            p, actual_close = made[j], float(bars[j].close)  # a Bar made in code may hold an int
            bar = bars[j]
            error = actual_close - p.predicted_close
            # One dict from one list of values: cheaper than a dict filled field by field.
            records[j] = dict(zip(keys, [
                "score", bar.ticker, iso[p.as_of], iso[bar.date], p.horizon, p.predicted_close, actual_close,
                error, 100.0 * abs(error) / actual_close, p.naive_close, actual_close - p.naive_close,
                *inside[k], *width[k], *interval_score[k],
                p.model, p.model_version, p.warmup, p.vol_regime], strict=True))
    return records, standardized


@cache
def _keys(levels: tuple[float, ...]) -> tuple[str, ...]:
    """A score record's fields in order, for predictions made with ``levels``."""
    labels = [level_label(level) for level in levels]
    return ("record_type", "ticker", "as_of", "target_date", "horizon", "predicted_close", "actual_close",
            "error", "abs_pct_error", "naive_close", "naive_error", *("inside_" + label for label in labels),
            *("width_" + label for label in labels), *("winkler_" + label for label in labels), "model",
            "model_version", "warmup", "vol_regime")
