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
>>> from models.core.state import LastPrediction
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
from models.core.state import Pending


class IsoDates(dict[dt.date, str]):
    """``date -> shift(date)`` as ``"YYYY-MM-DD"``, computed once per date (a batch is mostly one day)."""

    def __init__(self, shift: Callable[[dt.date], dt.date] = lambda day: day) -> None:
        super().__init__()
        self.shift = shift

    def __missing__(self, day: dt.date) -> str:
        text = self[day] = self.shift(day).isoformat()
        return text


def score(made: Sequence[Pending], bars: Sequence[Bar], log_close: np.ndarray,
          iso: IsoDates) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Score records of predictions ``made`` against the ``bars`` that followed them, batched.

    ``log_close`` is the log of the bars' closes. Returns the records (encodings of
    :class:`~models.core.records.Score`) and the standardized residuals, each in the order given.
    """
    # Field by field (one C-level transpose), so that the arithmetic runs on arrays and each record
    # costs one dict of ready values.
    (as_of, horizon, log_centre, scale, predicted_close, naive_close, levels_of, lower_of, upper_of, model,
     model_version, warmup, vol_regime) = zip(*made, strict=True)
    standardized = (log_close - np.array(log_centre)) / np.array(scale)
    # A Bar made in code may hold an int close: the records have floats.
    actual = np.array([bar.close for bar in bars], dtype=float)
    error = actual - np.array(predicted_close)
    # The percent error of a close near the float's floor can pass its range: infinite, written as
    # null, as an unbounded interval is (models.core.step._intervals). No warning for it.
    with np.errstate(over="ignore"):
        abs_pct_error = 100.0 * np.abs(error) / actual
    columns = ([bar.ticker for bar in bars], [iso[day] for day in as_of], [iso[bar.date] for bar in bars],
               horizon, predicted_close, actual.tolist(), error.tolist(), abs_pct_error.tolist(), naive_close,
               (actual - np.array(naive_close)).tolist())
    labels = (model, model_version, warmup, vol_regime)
    records: list[dict[str, Any]] = [{} for _ in made] if len(set(levels_of)) > 1 else []
    # Group by the levels the predictions were made with (one group unless the levels setting changed).
    groups: dict[tuple[float, ...], list[int]] = {}
    for j, levels in enumerate(levels_of):
        groups.setdefault(levels, []).append(j)
    for levels, members in groups.items():
        actual_k = actual[members, None]
        lower = np.array([lower_of[j] for j in members])
        upper = np.array([upper_of[j] for j in members])
        # Level by level (columns), zipped into one tuple per record that lives only while it is read.
        intervals = zip(*((lower <= actual_k) & (actual_k <= upper)).T.tolist(), *(upper - lower).T.tolist(),
                        *winkler(actual_k, lower, upper, np.array(levels)).T.tolist(), strict=True)
        picked = (columns, labels) if not records else ([[column[j] for j in members] for column in columns],
                                                        [[column[j] for j in members] for column in labels])
        keys = _keys(levels)
        # One dict from one list of values: cheaper than a dict filled field by field.
        group = [dict(zip(keys, ["score", *fields, *interval, *label], strict=True))
                 for fields, interval, label in zip(zip(*picked[0], strict=True), intervals,
                                                    zip(*picked[1], strict=True), strict=True)]
        if not records:
            return group, standardized
        for j, record in zip(members, group, strict=True):
            records[j] = record
    return records, standardized


@cache
def _keys(levels: tuple[float, ...]) -> tuple[str, ...]:
    """A score record's fields in order, for predictions made with ``levels``."""
    labels = [level_label(level) for level in levels]
    return ("record_type", "ticker", "as_of", "target_date", "horizon", "predicted_close", "actual_close",
            "error", "abs_pct_error", "naive_close", "naive_error", *("inside_" + label for label in labels),
            *("width_" + label for label in labels), *("winkler_" + label for label in labels), "model",
            "model_version", "warmup", "vol_regime")
