"""The volatility model that scales the intervals, and the volatility regime a prediction is made in.

**Variance forecast.** Each bar ``t`` of a ticker gives one noisy estimate ``v_t`` of the day's
close-to-close variance: half the squared log return, half the overnight gap squared plus the
Garman-Klass (1980) estimate from the day's open, high, low and close (a range carries several
times the information of one return). A ticker's first bar, without a previous close, gives the
Parkinson (1980) estimate of its range. The forecast for ``t + 1`` blends exponentially weighted
means of ``v`` over two horizons: a short one (decay 0.9, a half-life of about 7 bars) that reacts
to a storm, and a long one (decay 0.995, about 140 bars) that volatility reverts to, as a
GARCH(1,1) reverts to its unconditional variance. One horizon alone over-reacts (0.94, RiskMetrics:
calm spells get too narrow intervals, storms too wide) or under-reacts. Each mean is bias-corrected
by its weight ``1 - decay ** m`` after ``m`` bars, so a young ticker is not held to its first bar.
The decays, the weights (0.3 short, 0.7 long) and the range share were chosen on the S&P 500 days
up to 2015-12-31 (``docs/models.md``). Everything uses bars up to ``t`` only.

**Horizons.** The scale of a prediction ``h`` days ahead is the forecast variance of the sum of the
next ``h`` daily log returns (taken as uncorrelated). The slowest mean is the level volatility
reverts to; every other mean's excess over it decays by that mean's own decay per day ahead, as a
GARCH(1,1)'s forecast reverts by ``alpha + beta`` a day: day ``j`` ahead has the variance
``sum_k w_k (L + d_k ** (j - 1) (m_k - L))``. Summed over ``j = 1..h`` each mean weighs
``G_k(h) = (1 - d_k ** h) / (1 - d_k)`` and the level the rest, ``h - G_k(h)``; at ``h = 1`` that is
``G = 1`` and nothing of the level, the next-day forecast exactly.

**Regime.** A prediction's volatility regime compares the ticker's trailing volatility (the root mean
square of its last :data:`REGIME_DAYS` log returns, up to ``t``) with the same figure on each day of
its fitting window: below the window's lower third ``calm``, above the upper third ``volatile``, else
``middle``; None while the window holds fewer than :data:`REGIME_MIN_HISTORY` such days.

Examples
--------
>>> import numpy as np
>>> ewmas = np.zeros((1, 2))
>>> ewmas = update(ewmas, np.array([4e-4]), (0.9, 0.995))
>>> forecast(ewmas, 1, (0.9, 0.995), (0.3, 0.7)).round(10).tolist()  # one bar: its own estimate
[[0.0004]]
>>> ewmas = update(ewmas, np.array([1.6e-3]), (0.9, 0.995))  # a storm: the short mean is the higher
>>> (forecast(ewmas, 2, (0.9, 0.995), (0.3, 0.7), (1, 5)) / [1, 5]).round(7).tolist()  # per day
[[0.0010105, 0.0010089]]
>>> regimes(np.array([0.1, 0.5, 0.9, np.nan]))
['calm', 'middle', 'volatile', None]
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

#: Returns in the trailing volatility that decides a prediction's regime (a trading month).
REGIME_DAYS = 21
#: Fewest trailing volatilities (days) in the window to rank against before a regime is given: a month.
REGIME_MIN_HISTORY = 21
#: Garman-Klass's weight of the squared open-to-close return, ``2 ln 2 - 1``.
_GK_OC = 2.0 * math.log(2.0) - 1.0


def parkinson_variance(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Variance of a daily log return estimated from one day's range (Parkinson, 1980).

    >>> parkinson_variance(np.array([10.2]), np.array([9.8])).round(7).tolist()
    [0.0005772]
    """
    return (np.log(high) - np.log(low)) ** 2 / (4.0 * math.log(2.0))


def daily_variance(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                   prev_close: np.ndarray, range_weight: float) -> np.ndarray:
    """One estimate per bar of its close-to-close log-return variance, from the bar and the last close.

    ``(1 - range_weight) * r**2 + range_weight * (gap**2 + GK)``, where ``r`` is the log return,
    ``gap`` the overnight log return and ``GK`` the Garman-Klass variance of the day's own trading
    (never negative when high and low bound open and close). Where ``prev_close`` is NaN (a
    ticker's first bar), the Parkinson variance of the range.

    >>> daily_variance(*np.array([[10.0], [10.4], [9.9], [10.3], [10.1]]), 0.5).round(7).tolist()
    [0.0006799]
    """
    log_return = np.log(close) - np.log(prev_close)
    gap = np.log(open_) - np.log(prev_close)
    range_ = np.log(high) - np.log(low)
    body = np.log(close) - np.log(open_)
    garman_klass = 0.5 * range_ * range_ - _GK_OC * body * body
    blended = (1.0 - range_weight) * log_return * log_return + range_weight * (gap * gap + garman_klass)
    return np.where(np.isnan(prev_close), parkinson_variance(high, low), blended)


def update(ewmas: np.ndarray, variance: np.ndarray, decays: tuple[float, ...]) -> np.ndarray:
    """The ``[n, len(decays)]`` exponentially weighted sums after one more daily variance each.

    They start at zero and are not normalised: :func:`forecast` divides by the weight they hold.
    """
    decay = np.array(decays)
    return decay * ewmas + (1.0 - decay) * variance[:, None]


def forecast(ewmas: np.ndarray, count: np.ndarray | int, decays: tuple[float, ...],
             weights: tuple[float, ...], horizons: tuple[int, ...] = (1,)) -> np.ndarray:
    """Variance ``[n, len(horizons)]`` of the sum of the next ``h`` daily log returns, from the blend of
    the bias-corrected means after ``count`` bars (the module's *Horizons*; ``h = 1``: the next day's).

    Summed mean by mean, element-wise: a matrix product may round differently with the batch's
    size, and a ticker's forecast must not depend on the batch it is in.
    """
    count = np.asarray(count, dtype=float)
    growth, rest = _horizon_weights(tuple(decays), tuple(horizons))
    means = [ewmas[:, k] / (1.0 - decay ** count) for k, decay in enumerate(decays)]
    level = means[int(np.argmax(decays))][:, None]
    total = np.zeros((ewmas.shape[0], len(horizons)))
    for mean, weight, growth_k, rest_k in zip(means, weights, growth, rest, strict=True):
        # growth 1 and rest 0 at h = 1: exactly the next-day blend, bit for bit.
        total = total + weight * (mean[:, None] * growth_k + level * rest_k)
    return total


@cache
def _horizon_weights(decays: tuple[float, ...], horizons: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per decay ``[k]``, ``G_k(h)`` and ``h - G_k(h)`` ``[len(horizons)]`` (1 and 0 at ``h = 1``)."""
    growth = np.array([[1.0 if h == 1 else (1.0 - d ** h) / (1.0 - d) for h in horizons] for d in decays])
    return growth, np.array(horizons, dtype=float)[None, :] - growth


def trailing_vol_rank(windows: list[np.ndarray]) -> np.ndarray:
    """Per window of log closes (oldest first): the share of its days whose trailing volatility is at
    most the last day's, NaN while it has fewer than :data:`REGIME_MIN_HISTORY` such days.

    The trailing volatility is the realised one, the root mean square of the last
    :data:`REGIME_DAYS` log returns (no mean taken out: over a month it is noise, and leaving it
    halves the cost per bar). Only its rank matters, so the sums of squares are compared as they are.

    >>> closes = np.log(np.r_[100 * np.exp(np.cumsum(np.resize([0.02, -0.02], 100))),
    ...                       np.full(30, 100.0)])  # a storm, then no move at all
    >>> trailing_vol_rank([closes, closes[:40]]).round(3).tolist()
    [0.092, nan]
    """
    rank = np.full(len(windows), np.nan)
    by_size: dict[int, list[int]] = {}
    for i, window in enumerate(windows):
        by_size.setdefault(window.size, []).append(i)
    for size, rows in by_size.items():
        if size - REGIME_DAYS < REGIME_MIN_HISTORY:
            continue
        # Rows are computed one by one (cumulative sums, counts), so a ticker's rank does not depend
        # on the batch it is in.
        returns = np.diff(np.array([windows[i] for i in rows]), axis=1)
        running = np.cumsum(returns * returns, axis=1)
        squares = running[:, REGIME_DAYS - 1:].copy()
        squares[:, 1:] -= running[:, : -REGIME_DAYS]
        rank[rows] = np.count_nonzero(squares <= squares[:, -1:], axis=1) / squares.shape[1]
    return rank


def regimes(rank: np.ndarray) -> list[str | None]:
    """``calm`` / ``middle`` / ``volatile`` by thirds of :func:`trailing_vol_rank`; None where NaN."""
    return [None if math.isnan(r) else "calm" if r < 1 / 3 else "volatile" if r > 2 / 3 else "middle"
            for r in rank.tolist()]
