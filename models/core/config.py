"""What the per-bar forecasting core needs to know, validated once.

:class:`CoreConfig` is built from the system :class:`~forecaster.settings.Settings` (or directly in
tests and notebooks) and passed to every :func:`~models.core.step.step` call; the stream worker and
``forecaster backtest`` build it the same way, which is what makes their records equal.

Examples
--------
>>> CoreConfig().interval_levels
(0.8, 0.95)
>>> CoreConfig(model="naive", window=40, refit_every=5).model
'naive'
>>> CoreConfig(model="lstm")
Traceback (most recent call last):
...
ValueError: model must be one of naive, arima, external; got 'lstm'
>>> CoreConfig(vol_weights=(0.5, 0.6))
Traceback (most recent call last):
...
ValueError: vol_weights must be one non-negative weight per decay, summing to 1; got (0.5, 0.6)
>>> CoreConfig(interval_levels=(0.95, 0.8))
Traceback (most recent call last):
...
ValueError: interval_levels must be strictly increasing and inside (0, 1); got (0.95, 0.8)
>>> CoreConfig(calibration_window=10)
Traceback (most recent call last):
...
ValueError: calibration_window 10 is too small for the 0.95 interval; need >= 19
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

MODELS = ("naive", "arima", "external")


@dataclass(frozen=True)
class CoreConfig:
    """Configuration of the per-bar core.

    Parameters
    ----------
    model
        ``"naive"`` (tomorrow's close = today's), ``"arima"`` (incremental ARIMA one-step forecast) or
        ``"external"`` (an injected :class:`~models.core.model_slot.PointModel`).
    window
        Log closes per ticker kept for fitting the ARIMA; until it is full the core is in warm-up.
    refit_every
        Bars between ARIMA refits of a ticker (a failed refit is retried after as many bars).
    order
        ARIMA order ``(p, d, q)``, modelled on log closes.
    interval_levels
        Central prediction interval levels, strictly increasing, each in (0, 1).
    calibration_window
        Past standardized residuals per ticker used for the conformal interval quantiles.
    vol_decays, vol_weights
        Decays of the exponentially weighted means of daily variance that the volatility model
        blends, and their weights (summing to 1): see :mod:`models.core.volatility`.
    vol_range_weight
        Share of the range-based estimate (overnight gap and Garman-Klass) in each day's variance
        estimate, the rest being the squared close-to-close return.
    feature_history
        Feature rows kept per ticker whatever the model (more when an external model's lookback is
        longer), so that a model promoted while the stream runs predicts at once if its lookback
        fits, instead of warming up.
    """

    model: str = "arima"
    window: int = 252
    refit_every: int = 21
    order: tuple[int, int, int] = (2, 1, 0)
    interval_levels: tuple[float, ...] = (0.8, 0.95)
    calibration_window: int = 250
    vol_decays: tuple[float, ...] = (0.9, 0.995)
    vol_weights: tuple[float, ...] = (0.3, 0.7)
    vol_range_weight: float = 0.5
    feature_history: int = 32

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}; got {self.model!r}")
        if len(self.order) != 3 or any(not isinstance(k, int) or k < 0 for k in self.order):
            raise ValueError(f"order must be three non-negative integers (p, d, q); got {self.order!r}")
        p, d, q = self.order
        if p + q == 0:
            raise ValueError(f"order {self.order!r} has no AR or MA term to fit")
        # The fit regresses on p lags (and q residual lags of a long autoregression): keep at least
        # 10 equations per coefficient beyond the lags themselves.
        minimum = d + max(p, q) + 10 * (p + q + 1)
        if self.window < minimum:
            raise ValueError(f"window {self.window} is too short for order {self.order!r}; need >= {minimum}")
        if self.refit_every < 1:
            raise ValueError(f"refit_every must be >= 1; got {self.refit_every}")
        levels = self.interval_levels
        if not levels or any(not 0 < lv < 1 for lv in levels) or any(a >= b for a, b in pairwise(levels)):
            raise ValueError(
                f"interval_levels must be strictly increasing and inside (0, 1); got {levels!r}")
        # A conformal quantile at level L needs rank ceil((n + 1) L) <= n of n residuals: n >= L / (1 - L).
        needed = math.ceil(round(levels[-1] / (1 - levels[-1]), 9))
        if self.calibration_window < needed:
            raise ValueError(f"calibration_window {self.calibration_window} is too small for the "
                             f"{levels[-1]:g} interval; need >= {needed}")
        if not self.vol_decays or any(not 0 < d < 1 for d in self.vol_decays):
            raise ValueError(f"vol_decays must be inside (0, 1); got {self.vol_decays!r}")
        if (len(self.vol_weights) != len(self.vol_decays) or any(w < 0 for w in self.vol_weights)
                or not math.isclose(sum(self.vol_weights), 1.0)):
            raise ValueError(f"vol_weights must be one non-negative weight per decay, summing to 1; "
                             f"got {self.vol_weights!r}")
        if not 0 <= self.vol_range_weight <= 1:
            raise ValueError(f"vol_range_weight must be inside [0, 1]; got {self.vol_range_weight}")
        if self.feature_history < 1:
            raise ValueError(f"feature_history must be >= 1; got {self.feature_history}")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> CoreConfig:
        """The core's part of the system settings; ``overrides`` (e.g. ``model=``) win.

        >>> from forecaster.settings import load
        >>> CoreConfig.from_settings(load({"FORECASTER_ARIMA_ORDER": "1,1,0"}), model="naive").order
        (1, 1, 0)
        """
        values: dict[str, Any] = {
            "model": settings.model,
            "window": settings.window,
            "refit_every": settings.refit_every,
            "order": tuple(settings.arima_order),
            "interval_levels": tuple(settings.interval_levels),
            "calibration_window": settings.calibration_window,
            "feature_history": settings.feature_history,
        }
        values.update(overrides)
        return cls(**values)
