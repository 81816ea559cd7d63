"""Calibrated central prediction intervals: a causal scale times a tracked quantile.

Each prediction of a ticker has a scale ``s`` (log units): the volatility model's forecast of the
next day's log-return standard deviation (:mod:`models.core.volatility`), the same whatever the
point model. Dividing a prediction's log error by its scale gives a standardized residual, which is
roughly identically distributed whether the market is calm or not. The interval at level ``L`` is
``exp(log_prediction -+ q_L * s)``.

``q_L`` is tracked per ticker by online conformal calibration (quantile tracking, Angelopoulos,
Candès and Tibshirani 2023): each scored prediction moves it up by ``step * L`` when the close fell
outside the interval and down by ``step * (1 - L)`` when inside. After ``T`` scored predictions the
share outside is therefore ``1 - L`` to within ``(q_T - q_0) / (step * T)``, whatever the returns'
distribution and however it changes: the marginal guarantee of conformal prediction, without the
exchangeability a time series lacks. A ticker's quantiles start at the Gaussian ones; while it has
fewer scored residuals than :func:`warmup_residuals`, its intervals are at least the Gaussian ones
widened by :data:`WARMUP_WIDEN`, and its predictions are flagged as warm-up. Everything uses only
past bars, and the state is one number per level instead of a window of residuals.

Residuals are clipped to :data:`MAX_RESIDUAL` (which bounds how far one can move a quantile).

Examples
--------
>>> import numpy as np
>>> level_label(0.8), level_label(0.975)
('80', '97.5')
>>> q = initial_quantiles(1, (0.8, 0.95))
>>> q.round(3).tolist()
[[1.282, 1.96]]
>>> q = track_quantiles(q, np.array([1.5]), (0.8, 0.95), step=0.1)  # outside 80 %, inside 95 %
>>> q.round(3).tolist()
[[1.362, 1.955]]
>>> track_quantiles(q, np.array([np.nan]), (0.8, 0.95), step=0.1).round(3).tolist()  # nothing scored
[[1.362, 1.955]]
"""

from __future__ import annotations

import math
from functools import cache
from statistics import NormalDist

import numpy as np

#: Widening of the Gaussian quantile that bounds a ticker's intervals from below while it has too few
#: residuals for its tracked quantiles to have moved from their start.
WARMUP_WIDEN = 1.5
#: Smallest scale (log units): keeps standardized residuals finite on days without any movement.
MIN_SCALE = 1e-6
#: Largest absolute standardized residual kept for calibration. After a spell without trades the
#: scale is near zero and the next move is a "million-sigma" residual; a quantile moves only when a
#: residual is past it, so the cap bounds the quantiles at ``MAX_RESIDUAL + step``.
MAX_RESIDUAL = 10.0


def level_label(level: float) -> str:
    """The suffix of a level's record fields: 0.8 -> ``"80"`` (``lower_80``, ``inside_80``, ...)."""
    return f"{level * 100:g}"


@cache
def gaussian_quantile(level: float) -> float:
    """Half-width in standard deviations of a central Gaussian interval."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def warmup_residuals(levels: tuple[float, ...]) -> int:
    """Scored residuals before a ticker's intervals count as calibrated: ``L / (1 - L)`` for the
    highest level, the fewest among which one close outside its interval is expected.

    >>> warmup_residuals((0.8, 0.95))
    19
    """
    return math.ceil(round(levels[-1] / (1 - levels[-1]), 9))


def initial_quantiles(n: int, levels: tuple[float, ...]) -> np.ndarray:
    """``[n, len(levels)]`` starting quantiles: the Gaussian ones."""
    return np.tile([gaussian_quantile(level) for level in levels], (n, 1))


def track_quantiles(quantiles: np.ndarray, abs_residuals: np.ndarray, levels: tuple[float, ...],
                    step: float) -> np.ndarray:
    """The ``[n, len(levels)]`` quantiles after one more absolute standardized residual per row.

    A row whose residual is NaN (nothing was scored) keeps its quantiles. None goes below zero.
    """
    outside = abs_residuals[:, None] > quantiles
    moved = np.maximum(quantiles + step * (outside - (1.0 - np.asarray(levels))), 0.0)
    return np.where(np.isnan(abs_residuals)[:, None], quantiles, moved)


def interval_quantiles(quantiles: np.ndarray, residuals: np.ndarray,
                       levels: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The quantiles the intervals use, and which rows are still in warm-up.

    Rows with fewer than :func:`warmup_residuals` scored residuals (``residuals``) take at least the
    widened Gaussian quantiles; every row is made non-decreasing across levels, so that a higher level
    never gets a narrower interval than a lower one.
    """
    short = residuals < warmup_residuals(levels)
    used = np.where(short[:, None], np.maximum(quantiles, _widened(levels)), quantiles)
    return np.maximum.accumulate(used, axis=1), short


@cache
def _widened(levels: tuple[float, ...]) -> np.ndarray:
    return np.array([WARMUP_WIDEN * gaussian_quantile(level) for level in levels])
