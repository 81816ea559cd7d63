"""Calibrated central prediction intervals: a causal scale times a conformal quantile.

Each prediction of a ticker has a scale ``s`` (log units): the volatility model's forecast of the
next day's log-return standard deviation (:mod:`models.core.volatility`), the same whatever the
point model. Dividing a prediction's log error by its scale gives a standardized residual, which is
roughly identically distributed whether the market is calm or not. The interval at level ``L`` is
``exp(log_prediction -+ q_L * s)``, where ``q_L`` is the finite-sample conformal quantile of the
absolute standardized residuals in the ticker's rolling calibration window: the
``ceil((m + 1) * L)``-th smallest of ``m``. Everything uses only past bars.

While the window holds too few residuals for that rank (fewer than ``L / (1 - L)``), the Gaussian
quantile widened by :data:`WARMUP_WIDEN` (or the largest residual seen, if larger) is used and the
prediction is flagged as warm-up.
Residuals enter the window clipped to :data:`MAX_RESIDUAL`.

Examples
--------
>>> import numpy as np
>>> level_label(0.8), level_label(0.975)
('80', '97.5')
>>> residuals = np.array([[0.5, -1.0, 2.0, np.inf], [1.0, np.inf, np.inf, np.inf]])
>>> q, fallback = conformal_quantiles(np.abs(residuals), np.array([3, 1]), (0.5, 0.75))
>>> q.round(3).tolist(), fallback.tolist()  # the 2nd row has too few residuals for 75 %
([[1.0, 2.0], [1.0, 1.726]], [False, True])
"""

from __future__ import annotations

from functools import cache
from statistics import NormalDist

import numpy as np

#: Widening of the Gaussian quantile used while a ticker has too few residuals to calibrate.
WARMUP_WIDEN = 1.5
#: Smallest scale (log units): keeps standardized residuals finite on days without any movement.
MIN_SCALE = 1e-6
#: Largest absolute standardized residual kept for calibration. After a spell without trades the
#: scale is near zero and the next move is a "million-sigma" residual; kept as is, it would make the
#: ticker's intervals astronomically wide (even infinite) for a whole calibration window. A 10-sigma
#: cap never binds for the usual levels unless more than 1 - level of the residuals exceed it.
MAX_RESIDUAL = 10.0


def level_label(level: float) -> str:
    """The suffix of a level's record fields: 0.8 -> ``"80"`` (``lower_80``, ``inside_80``, ...)."""
    return f"{level * 100:g}"


@cache
def gaussian_quantile(level: float) -> float:
    """Half-width in standard deviations of a central Gaussian interval."""
    return NormalDist().inv_cdf(0.5 + level / 2)


@cache
def rank_table(width: int, levels: tuple[float, ...]) -> np.ndarray:
    """``ceil((m + 1) * level)`` for ``m`` in ``0..width`` (rows) and each level (columns).

    Exact: the product is rounded to 9 decimals first, so 100 * 0.55 is rank 55, not 56.
    """
    counts = np.arange(width + 1)[:, None]
    table = np.ceil(np.round((counts + 1) * np.array(levels)[None, :], 9)).astype(np.int64)
    table.flags.writeable = False
    return table


def conformal_quantiles(abs_residuals: np.ndarray, counts: np.ndarray,
                        levels: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles ``[n, len(levels)]`` of absolute standardized residuals, batched.

    ``abs_residuals`` is ``[n, width]`` with the first ``counts[i]`` entries of row ``i`` filled and
    the rest ``inf``. Returns the quantiles and a ``[n]`` flag of rows that needed the warm-up
    fallback for some level.
    """
    width = abs_residuals.shape[1]
    if counts.min() == width:  # every window full, the steady state: one rank per level
        ordered = np.sort(abs_residuals, axis=1)
        return ordered[:, rank_table(width, levels)[width] - 1], np.zeros(len(counts), dtype=bool)
    rank = rank_table(width, levels)[counts]
    short = rank > counts[:, None]
    ordered = np.sort(abs_residuals, axis=1)
    quantiles = np.take_along_axis(ordered, np.minimum(rank, width) - 1, axis=1)
    # Too few residuals: the widened Gaussian quantile, but never below the largest residual seen, so
    # that a higher level never gets a narrower interval than a lower, calibrated one.
    largest = np.where(counts > 0, ordered[np.arange(len(counts)), np.maximum(counts - 1, 0)], 0.0)
    quantiles = np.where(short, np.maximum(_fallback(levels), largest[:, None]), quantiles)
    return quantiles, short.any(axis=1)


@cache
def _fallback(levels: tuple[float, ...]) -> np.ndarray:
    return np.array([WARMUP_WIDEN * gaussian_quantile(level) for level in levels])
