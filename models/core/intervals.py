"""Calibrated central prediction intervals: a causal scale, a residual level, a Student-t shape.

Each prediction of a ticker has a scale ``s`` (log units): the volatility model's forecast of the
next day's log-return standard deviation (:mod:`models.core.volatility`), the same whatever the
point model. Dividing a prediction's log error by its scale gives a standardized residual ``z``.
The interval at level ``L`` is ``exp(centre -+ c_L * m * s)``, where

* ``m`` is the ticker's *residual level*: an exponentially weighted mean of its past non-zero
  ``|z|`` (decay ``calibration_decay``, divided by the weights), which corrects a scale that runs
  too high or too low for a while;
* ``c_L`` is the ratio of a Student-t's ``L`` central quantile to its mean absolute value
  (``interval_df`` degrees of freedom: the fat tails of daily returns), plus a per-ticker offset
  that each score moves as online conformal calibration does (Angelopoulos, Candès and Tibshirani
  2023; Gibbs and Candès 2021): up by ``rate * L`` on a miss, down by ``rate * (1 - L)`` on a hit,
  so that over a long run the share of misses is ``1 - L`` whatever the residuals' true shape.

A shape shared by every ticker estimates a 95 % tail far more precisely than one ticker's last few
hundred residuals can, and the level follows the ticker. Residuals that are exactly 0 (a close
equal to the centre: around the last close, a day without trades) are an atom the shape lacks:
with a share ``p0`` of them (weighted as the level), level ``L`` takes the ``(L - p0) / (1 - p0)``
quantile of the shape, so that a thinly traded ticker keeps its coverage. Everything uses only past
bars; the choices and their figures are in docs/models.md.

While a ticker has fewer than :data:`MIN_RESIDUALS` residuals, the Gaussian quantile widened by
:data:`WARMUP_WIDEN` is used and the prediction is flagged as warm-up. Residuals enter the
calibration clipped to :data:`MAX_RESIDUAL`.

Examples
--------
>>> import numpy as np
>>> level_label(0.8), level_label(0.975)
('80', '97.5')
>>> shape_multipliers((0.8, 0.95), 5.0).round(3).tolist()
[1.555, 2.709]
>>> calibration = Calibration.empty(1, (0.8,))
>>> for z in [1.0] * 19 + [2.0]:  # the 20th, 2 > 1.555 * 1, misses: its offset steps up
...     calibration = calibration.update(np.array([z]), decay=0.99, rate=0.01, levels=(0.8,), df=5.0)
>>> half_widths, warming_up = calibration.quantiles((0.8,), 5.0)
>>> warming_up.tolist(), calibration.offsets.round(4).tolist(), half_widths.round(3).tolist()
([False], [[-0.028]], [[1.611]])
>>> calibration.update(np.array([0.0]), 0.99, 0.01, (0.8,), 5.0).zeros.tolist()  # one day at the centre
[1.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist

import numpy as np

#: Widening of the Gaussian quantile used while a ticker has too few residuals to calibrate.
WARMUP_WIDEN = 1.5
#: Residuals a ticker's level needs before its intervals count as calibrated (a trading month).
MIN_RESIDUALS = 20
#: Smallest scale (log units): keeps standardized residuals finite on days without any movement.
MIN_SCALE = 1e-6
#: Largest absolute standardized residual kept for calibration. After a spell without trades the
#: scale is near zero and the next move is a "million-sigma" residual; kept as is, it would make the
#: ticker's intervals astronomically wide (even infinite) for months.
MAX_RESIDUAL = 10.0


def level_label(level: float) -> str:
    """The suffix of a level's record fields: 0.8 -> ``"80"`` (``lower_80``, ``inside_80``, ...)."""
    return f"{level * 100:g}"


@cache
def gaussian_quantile(level: float) -> float:
    """Half-width in standard deviations of a central Gaussian interval."""
    return NormalDist().inv_cdf(0.5 + level / 2)


@cache
def _shape_table(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Levels ``L`` on a fine grid of ``[0, 1)`` and the Student-t's ``c_L`` at each."""
    from scipy.special import stdtrit  # the core's one use of scipy, once per configuration

    mean_abs = 2 * math.sqrt(df) * math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / (
        math.sqrt(math.pi) * (df - 1))
    grid = np.linspace(0.0, 0.9999, 10_000)
    return grid, stdtrit(df, 0.5 + grid / 2) / mean_abs


def shape_multipliers(levels: np.ndarray | tuple[float, ...], df: float) -> np.ndarray:
    """``c_L`` of a Student-t with ``df`` degrees of freedom: its ``L`` central quantile over ``E|T|``."""
    grid, table = _shape_table(df)
    return np.interp(np.asarray(levels), grid, table)


@dataclass(frozen=True, slots=True)
class Calibration:
    """The calibration of a batch of tickers: row ``i`` is ticker ``i``'s.

    Attributes
    ----------
    sums, weights
        ``[n]``: the exponentially weighted sum of the clipped non-zero ``|z|`` and of their weights;
        the level is their ratio.
    zeros
        ``[n]``: the exponentially weighted weight of the residuals that were exactly 0 (a close
        equal to the centre: a day without trades, around the last close).
    counts
        ``[n]``: residuals seen (for the warm-up).
    offsets
        ``[n, levels]``: each level's online conformal correction of ``c_L``.
    """

    sums: np.ndarray
    weights: np.ndarray
    zeros: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray

    @classmethod
    def empty(cls, n: int, levels: tuple[float, ...]) -> Calibration:
        """``n`` tickers without residuals."""
        return cls(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64),
                   np.zeros((n, len(levels))))

    def _half_widths(self, levels: tuple[float, ...], df: float) -> np.ndarray:
        # A share p0 of the outcomes sits exactly on the centre: level L needs only the
        # (L - p0) / (1 - p0) central quantile of the others.
        seen = self.weights + self.zeros
        with np.errstate(invalid="ignore", divide="ignore"):
            p0 = np.where(seen > 0, self.zeros / seen, 0.0)
            level = np.where(self.weights > 0, self.sums / self.weights, 0.0)
            moving = np.clip((np.array(levels)[None, :] - p0[:, None]) / (1 - p0[:, None]), 0.0, 1.0)
        multipliers = np.maximum(shape_multipliers(moving, df) + self.offsets, 0.0)
        # Running maxima over the levels: a higher level's interval is never the narrower.
        return np.maximum.accumulate(multipliers, axis=1) * level[:, None]

    def update(self, abs_residuals: np.ndarray, decay: float, rate: float,
               levels: tuple[float, ...], df: float) -> Calibration:
        """After each ticker's new ``|z|`` (NaN: none scored): the level and the share of zeros move,
        and each offset steps up on a miss of the calibration's interval (``|z|`` beyond the
        half-width it gave, which the prediction used once its warm-up was over), down on a hit. A
        ticker without residuals yet has no such interval: no step."""
        scored = ~np.isnan(abs_residuals)
        clipped = np.where(scored, np.minimum(abs_residuals, MAX_RESIDUAL), 0.0)
        zero = scored & (clipped == 0.0)
        moved = scored & ~zero
        stepping = scored & (self.weights + self.zeros > 0)
        missed = clipped[:, None] > self._half_widths(levels, df)
        step = rate * (missed - (1 - np.array(levels))[None, :])
        kept = np.where(scored, decay, 1.0)
        return Calibration(sums=kept * self.sums + np.where(moved, clipped, 0.0),
                           weights=kept * self.weights + moved, zeros=kept * self.zeros + zero,
                           counts=self.counts + scored,
                           offsets=np.where(stepping[:, None], self.offsets + step, self.offsets))

    def quantiles(self, levels: tuple[float, ...], df: float) -> tuple[np.ndarray, np.ndarray]:
        """``[n, levels]`` half-widths in scales, and a ``[n]`` flag of the tickers still warming up
        (their half-widths are the widened Gaussian's)."""
        short = self.counts < MIN_RESIDUALS
        return np.where(short[:, None], _fallback(levels)[None, :], self._half_widths(levels, df)), short


@cache
def _fallback(levels: tuple[float, ...]) -> np.ndarray:
    return np.array([WARMUP_WIDEN * gaussian_quantile(level) for level in levels])
