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
>>> CoreConfig(interval_centre="mean")
Traceback (most recent call last):
...
ValueError: interval_centre must be one of naive, model; got 'mean'
>>> CoreConfig(horizons=(1, 5, 20)).horizons
(1, 5, 20)
>>> CoreConfig(horizons=(5, 1))
Traceback (most recent call last):
...
ValueError: horizons must be strictly increasing whole numbers of trading days in 1..260; got (5, 1)
"""

from __future__ import annotations

import math
from dataclasses import Field, dataclass, field, fields
from itertools import pairwise
from typing import Any

#: The core's own models, which serve while no champion is registered (the ``model`` setting's values).
CORE_MODELS = ("naive", "arima")
MODELS = (*CORE_MODELS, "external")
#: The longest horizon: a year of trading days.
MAX_HORIZON = 260
CENTRES = ("naive", "model")


def _field(default: Any, doc: str, setting: str | None = None) -> Any:
    """A field with its doc; ``setting`` names the :class:`~forecaster.settings.Settings` field (and so the
    ``FORECASTER_`` variable) it is read from, when it is one."""
    metadata = {"doc": doc} if setting is None else {"doc": doc, "setting": setting}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class CoreConfig:
    """Configuration of the per-bar core: the one source of its defaults.

    Each field's doc is its ``metadata["doc"]``, next to it below; the fields with a ``setting`` are
    also system settings (:class:`~forecaster.settings.Settings` takes their defaults and docs from
    here, and ``forecaster settings`` and the README show them).
    """

    model: str = _field(
        "arima", "model served while no champion is registered: naive (tomorrow's close is today's) or arima "
        "(incremental ARIMA one-step forecast); a champion runs as external (an injected PointModel)",
        "model")
    window: int = _field(252, "log closes per ticker kept for fitting the ARIMA (rolling window); until it "
                         "is full the ARIMA warms up", "window")
    refit_every: int = _field(21, "bars between ARIMA refits per ticker (a failed refit is retried after as "
                              "many bars)", "refit_every")
    order: tuple[int, int, int] = _field((2, 1, 0), "ARIMA order p,d,q, modelled on log closes",
                                         "arima_order")
    interval_levels: tuple[float, ...] = _field(
        (0.8, 0.95), "central prediction interval levels, comma separated, strictly increasing, each in "
        "(0, 1)", "interval_levels")
    horizons: tuple[int, ...] = _field(
        (1,), "forecast horizons in trading days (bars of the ticker), comma separated, strictly increasing, "
        f"each in 1..{MAX_HORIZON}: each bar predicts the close that many bars ahead, with its own intervals "
        "and calibration (docs/models.md, Horizons)", "horizons")
    interval_centre: str = _field(
        "naive", "centre of the prediction intervals: naive (the last close, which no model beats at one "
        "day ahead: the sharper intervals, docs/models.md) or model (the model's predicted close)",
        "interval_centre")
    calibration_decay: float = _field(
        0.995, "decay of the exponentially weighted mean of each ticker's non-zero absolute standardized "
        "errors, the level its interval multipliers scale (models.core.intervals)", "calibration_decay")
    calibration_rate: float = _field(
        0.005, "step per score of the online conformal offset of each ticker's interval multipliers (0: "
        "the shape's multipliers as they are)")
    interval_df: float = _field(
        5.0, "degrees of freedom of the Student-t shape of the standardized errors that the interval "
        "multipliers take, before each ticker's offsets")
    vol_decays: tuple[float, ...] = _field(
        (0.9, 0.995), "decays of the exponentially weighted means of daily variance that the volatility "
        "model blends (models.core.volatility)")
    vol_weights: tuple[float, ...] = _field((0.3, 0.7), "weights of the vol_decays means, summing to 1")
    vol_range_weight: float = _field(
        0.5, "share of the range-based estimate (overnight gap and Garman-Klass) in each day's variance "
        "estimate, the rest being the squared close-to-close return")
    feature_history: int = _field(
        32, "feature rows kept per ticker whatever the model (more when an external model's lookback is "
        "longer), so that a newly promoted model whose lookback is at most this predicts at once instead of "
        "warming up", "feature_history")

    def __post_init__(self) -> None:
        for f in fields(self):  # of its default's kind: a list is unhashable, and steps cache by config
            value, default = getattr(self, f.name), f.default
            if isinstance(default, tuple) and type(value) is not tuple:
                raise ValueError(f"{f.name} must be a tuple; got {value!r}")
            if type(default) is int and type(value) is not int:
                raise ValueError(f"{f.name} must be a whole number; got {value!r}")
            if type(default) is float and (type(value) not in (int, float) or not math.isfinite(value)):
                raise ValueError(f"{f.name} must be a finite number; got {value!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}; got {self.model!r}")
        if len(self.order) != 3 or any(type(k) is not int or k < 0 for k in self.order):
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
        horizons = self.horizons
        if (not horizons or any(type(h) is not int or not 1 <= h <= MAX_HORIZON for h in horizons)
                or any(a >= b for a, b in pairwise(horizons))):
            raise ValueError(f"horizons must be strictly increasing whole numbers of trading days in "
                             f"1..{MAX_HORIZON}; got {horizons!r}")
        if self.interval_centre not in CENTRES:
            raise ValueError(f"interval_centre must be one of {', '.join(CENTRES)}; "
                             f"got {self.interval_centre!r}")
        if not 0 < self.calibration_decay < 1:
            raise ValueError(f"calibration_decay must be inside (0, 1); got {self.calibration_decay}")
        if self.calibration_rate < 0:
            raise ValueError(f"calibration_rate must be >= 0; got {self.calibration_rate}")
        if not self.interval_df > 1:  # E|T| is finite from 1 degree of freedom on
            raise ValueError(f"interval_df must be > 1; got {self.interval_df}")
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
        values: dict[str, Any] = {}
        for name, spec in SETTINGS.items():
            value = getattr(settings, name)
            values[spec.name] = tuple(value) if isinstance(spec.default, tuple) else value
        values.update(overrides)
        return cls(**values)


#: The fields of :class:`CoreConfig` that are system settings, by their settings name.
SETTINGS: dict[str, Field[Any]] = {f.metadata["setting"]: f for f in fields(CoreConfig)
                                   if "setting" in f.metadata}
