"""ARIMA as a window model, and the ARIMA + residual-model hybrid.

:class:`ArimaModel` is the core's :class:`~models.core.arima.Arima` (statsmodels' ARIMA in
state-space form, on log closes) refitted on the window's ``log_return`` column at every forecast:
with ``d = 1`` the ARMA part runs on log-returns, so the window's returns are all the ARIMA needs
(the level's constant cancels). The streaming core runs the same model incrementally (a refit every
``refit_every`` bars, Kalman updates between); this form refits every bar on the same window
length, which is what the core's forecast converges to when ``refit_every = 1``. Nothing is learned
offline: ``fit`` only checks its inputs.

:class:`ArimaResidualModel` is the reference design's second hybrid: the ARIMA forecast plus an
XGBoost model of the ARIMA's next-day error, trained on day t's features and the ARIMA forecast.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> returns = np.zeros(300)
>>> for t in range(1, 300):
...     returns[t] = 0.5 * returns[t - 1] + 0.01 * rng.normal()
>>> windows = np.zeros((1, 252, 6))
>>> windows[0, :, 0] = returns[-252:]
>>> model = ArimaModel(order=(1, 1, 0))
>>> forecast = model.predict_returns(windows)[0]
>>> bool(abs(forecast - 0.5 * returns[-1]) < 0.2 * abs(returns[-1]))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.core.arima import Arima, ArimaFitError
from models.core.features import FEATURE_NAMES
from models.families.booster import day_t_booster_params, fit_booster

_RETURN_COLUMN = FEATURE_NAMES.index("log_return")


class ArimaModel:
    """ARIMA(p, 1, q) refitted on the last ``lookback`` log-returns of each window.

    Parameters
    ----------
    order
        ``(p, d, q)`` with ``d == 1`` (the window holds returns, i.e. once-differenced log closes).
    lookback
        Returns per fit (the core's ``window``).

    Examples
    --------
    >>> ArimaModel(order=(2, 0, 0))
    Traceback (most recent call last):
    ...
    ValueError: ArimaModel needs d == 1 (it fits the window's log-returns); got order (2, 0, 0)
    """

    def __init__(self, order: tuple[int, int, int] | list[int] = (2, 1, 0), lookback: int = 252) -> None:
        pdq = tuple(int(k) for k in order)
        if len(pdq) != 3 or pdq[1] != 1:
            raise ValueError(f"ArimaModel needs d == 1 (it fits the window's log-returns); got order {pdq}")
        p, d, q = pdq
        minimum = 1 + max(p, q) + 20 * (p + q + 1)
        if lookback < minimum:
            raise ValueError(f"lookback {lookback} is too short for order {pdq}; need >= {minimum}")
        self.name = "arima"
        self.version = ""  # the registry version, set when loaded from MLflow
        self.arima = Arima((p, d, q))
        self.lookback = int(lookback)
        self.params: dict[str, Any] = {"order": [p, d, q], "lookback": self.lookback}

    def fit(self, windows: np.ndarray, targets: np.ndarray,
            val_windows: np.ndarray, val_targets: np.ndarray) -> ArimaModel:
        """Nothing to learn offline (every forecast refits on its window); checks the shapes."""
        for w, y in ((windows, targets), (val_windows, val_targets)):
            if w.ndim != 3 or w.shape[1] != self.lookback or y.shape != (w.shape[0],):
                raise ValueError(f"expected windows [n, {self.lookback}, features] and [n] targets, "
                                 f"got {w.shape} and {y.shape}")
        return self

    def predict_returns(self, windows: np.ndarray) -> np.ndarray:
        """The ARIMA's next log-return for each window; 0 (the naive forecast) where a fit fails."""
        if windows.ndim != 3 or windows.shape[1] != self.lookback:
            raise ValueError(f"expected windows [n, {self.lookback}, features], got shape {windows.shape}")
        forecasts = np.zeros(windows.shape[0])
        for i, returns in enumerate(windows[:, :, _RETURN_COLUMN]):
            # Log closes up to a constant, which the differencing removes.
            levels = np.r_[0.0, np.cumsum(returns)]
            try:
                params = self.arima.fit(levels)
            except ArimaFitError:
                continue  # like the core: no usable fit, no ARIMA opinion; the naive forecast stands
            state, _ = self.arima.initial_state(params, levels)
            forecasts[i] = state[0]
        return forecasts

    def components(self) -> dict[str, Any]:
        """No native objects: the parameters are the whole model."""
        return {}

    @classmethod
    def from_components(cls, name: str, params: dict[str, Any], components: dict[str, Any]) -> ArimaModel:
        """Rebuild from the stored order and lookback."""
        return cls(order=params["order"], lookback=params["lookback"])


class ArimaResidualModel:
    """ARIMA forecast plus XGBoost on the ARIMA's error, from ``[features at t, ARIMA forecast]``.

    Parameters
    ----------
    arima
        Parameters of the :class:`ArimaModel` stage (``order``, ``lookback``).
    booster
        Parameters of the XGBoost stage (keys of :data:`models.families.booster.DEFAULTS` but
        ``lookback``: it reads day t only).
    """

    def __init__(self, arima: dict[str, Any] | None = None, booster: dict[str, Any] | None = None) -> None:
        self.name = "arima_residual"
        self.version = ""  # the registry version, set when loaded from MLflow
        self.arima = ArimaModel(**(arima or {}))
        self.booster_params = day_t_booster_params("arima_residual", booster)
        self.params = {"arima": self.arima.params, "booster": self.booster_params}
        self.lookback = self.arima.lookback
        self.booster: Any = None

    def _inputs(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        forecast = self.arima.predict_returns(windows)
        return forecast, np.column_stack([windows[:, -1, :], forecast])

    def fit(self, windows: np.ndarray, targets: np.ndarray,
            val_windows: np.ndarray, val_targets: np.ndarray) -> ArimaResidualModel:
        """Fit the booster on the ARIMA's errors (early-stopped on the validation windows)."""
        forecast, rows = self._inputs(windows)
        val_forecast, val_rows = self._inputs(val_windows)
        self.booster = fit_booster(rows, targets - forecast, val_rows, val_targets - val_forecast,
                                   self.booster_params)
        return self

    def predict_returns(self, windows: np.ndarray) -> np.ndarray:
        """ARIMA forecast plus the predicted ARIMA error, ``[n]``."""
        if self.booster is None:
            raise RuntimeError("arima_residual is not fitted")
        forecast, rows = self._inputs(windows)
        return forecast + self.booster.predict(rows).astype("float64")

    def components(self) -> dict[str, Any]:
        """The native objects to store: the residual booster."""
        return {"model": self.booster}

    @classmethod
    def from_components(cls, name: str, params: dict[str, Any],
                        components: dict[str, Any]) -> ArimaResidualModel:
        """Rebuild from the stored parameters and the loaded booster."""
        booster = {k: v for k, v in params["booster"].items() if k != "lookback"}
        model = cls(arima=params["arima"], booster=booster)
        model.booster = components["model"]
        return model
