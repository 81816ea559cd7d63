"""Causal features of day ``t``: computed from the bar of day ``t`` and what the state kept of earlier bars.

Every feature of day ``t`` uses only bars up to ``t`` (same-day high, low and open are known once the
day's bar is, and are used to predict the *next* close, never the same day's). The first bar of a
ticker has no previous bar, so its changes (``log_return``, ``gap_return``, ``volume_change``) are NaN
and the row is not kept for models; ``arima_residual`` is 0 until the ticker's ARIMA is first fitted
(no model yet, so no surprise).

Examples
--------
>>> import numpy as np
>>> rows = feature_rows(open_=np.array([10.0]), high=np.array([11.0]), low=np.array([9.5]),
...                     close=np.array([10.5]), volume=np.array([0.0]), prev_close=np.array([10.0]),
...                     prev_volume=np.array([99.0]), arima_residual=np.array([0.3]))
>>> dict(zip(FEATURE_NAMES, np.round(rows[0], 4).tolist()))  # doctest: +NORMALIZE_WHITESPACE
{'log_return': 0.0488, 'hl_range': 0.1466, 'oc_return': 0.0488, 'gap_return': 0.0,
 'volume_change': -4.6052, 'arima_residual': 0.3}
"""

from __future__ import annotations

import numpy as np

#: Columns of a feature row, in order.
FEATURE_NAMES: tuple[str, ...] = (
    "log_return",      # log(close_t / close_{t-1})
    "hl_range",        # log(high_t / low_t): the day's range, a volatility proxy
    "oc_return",       # log(close_t / open_t): the move within the day
    "gap_return",      # log(open_t / close_{t-1}): the overnight move
    "volume_change",   # log((1 + volume_t) / (1 + volume_{t-1})): defined for zero-volume days
    "arima_residual",  # standardized ARIMA innovation of close_t (0 before the first fit)
)


def feature_rows(*, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                 volume: np.ndarray, prev_close: np.ndarray, prev_volume: np.ndarray,
                 arima_residual: np.ndarray) -> np.ndarray:
    """Feature rows ``[n, len(FEATURE_NAMES)]`` of a batch of bars of day ``t``.

    ``prev_close`` and ``prev_volume`` are NaN for a ticker's first bar, which makes its changes NaN.
    """
    log_open, log_close, log_prev = np.log(open_), np.log(close), np.log(prev_close)
    return np.column_stack((
        log_close - log_prev,
        np.log(high) - np.log(low),
        log_close - log_open,
        log_open - log_prev,
        np.log1p(volume) - np.log1p(prev_volume),
        arima_residual,
    ))
