"""The slot for a model the core does not know: anything with ``predict_returns`` over feature windows.

The stream worker fills it with the registry's champion (``models.registry.load_model``); tests fill
it with a few lines of numpy. The core calls :meth:`PointModel.predict_returns` once per batch with
the feature windows of every ticker that has ``lookback`` feature rows, and puts the same calibrated
intervals around the last close (or, with ``interval_centre="model"``, around its predictions) as it
does for the naive forecast.

Examples
--------
>>> import numpy as np
>>> class Momentum:
...     name, version, lookback = "momentum", "1", 5
...     def predict_returns(self, windows: np.ndarray) -> np.ndarray:
...         return 0.1 * windows[:, :, 0].mean(axis=1)
>>> isinstance(Momentum(), PointModel)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class PointModel(Protocol):
    """A one-step point model on causal feature windows.

    Attributes
    ----------
    name, version
        Written into every prediction and score record (``model``, ``model_version``).
    lookback
        Feature rows a window holds; a ticker with fewer rows gets the naive warm-up forecast.
    """

    name: str
    version: str
    lookback: int

    def predict_returns(self, windows: np.ndarray) -> np.ndarray:
        """Predicted ``log(close[t + 1] / close[t])`` ``[n]`` for windows
        ``[n, lookback, len(FEATURE_NAMES)]`` (float64, rows oldest to newest, the last row is day ``t``)."""
        ...
