"""The attention/XGBoost hybrid: boosted trees on the attention model's forecast plus day t's features.

The reference design stacks XGBoost on the attention CNN-BiLSTM's output. Here both stages see the
training period only, and the booster never learns from forecasts of windows the network was
trained on (those are better than any forecast it will see): the training windows are cut into
:data:`FOLDS` consecutive blocks, and each block's forecasts come from a network trained on the
other blocks, less the ``lookback`` windows on either side of the block (a neighbouring window
holds the block's targets among its features). The booster learns from ``[features at t,
out-of-fold forecast]``; it is early-stopped on the validation windows with the forecasts of the
network trained on all training windows, the network it serves with.

Examples
--------
>>> AttentionXGBoost(attention={"lookback": 4}).lookback
4
>>> AttentionXGBoost(booster={"lookback": 2})
Traceback (most recent call last):
...
ValueError: the booster of attention_xgboost reads day t only; its lookback cannot be set
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.families.booster import day_t_booster_params, fit_booster
from models.families.neural import KerasWindowModel

#: Blocks of the training windows for the network's out-of-fold forecasts (each block costs a fit).
FOLDS = 3


class AttentionXGBoost:
    """XGBoost over ``[features at t, attention CNN-BiLSTM forecast]``.

    Parameters
    ----------
    attention
        Parameters of the :class:`~models.families.neural.KerasWindowModel` stage.
    booster
        Parameters of the XGBoost stage (keys of :data:`models.families.booster.DEFAULTS`).
    """

    def __init__(self, attention: dict[str, Any] | None = None,
                 booster: dict[str, Any] | None = None) -> None:
        self.name = "attention_xgboost"
        self.version = ""  # the registry version, set when loaded from MLflow
        self.attention = KerasWindowModel("cnn_bilstm_attention", **(attention or {}))
        self.booster_params = day_t_booster_params("attention_xgboost", booster)
        self.params = {"attention": self.attention.params, "booster": self.booster_params}
        self.lookback = self.attention.lookback
        self.booster: Any = None

    def _stacked(self, windows: np.ndarray) -> np.ndarray:
        return np.column_stack([windows[:, -1, :], self.attention.predict_returns(windows)])

    def out_of_fold(self, windows: np.ndarray, targets: np.ndarray,
                    val_windows: np.ndarray, val_targets: np.ndarray) -> np.ndarray:
        """Each training window's forecast by a network trained without its block (see the module)."""
        forecasts = np.empty(len(windows))
        for block in np.array_split(np.arange(len(windows)), FOLDS):
            keep = np.ones(len(windows), dtype=bool)
            keep[max(block[0] - self.lookback, 0): block[-1] + self.lookback + 1] = False
            network = KerasWindowModel("cnn_bilstm_attention", **self.attention.params)
            network.fit(windows[keep], targets[keep], val_windows, val_targets)
            forecasts[block] = network.predict_returns(windows[block])
        return forecasts

    def fit(self, windows: np.ndarray, targets: np.ndarray,
            val_windows: np.ndarray, val_targets: np.ndarray) -> AttentionXGBoost:
        """Train the network, then the booster on out-of-fold forecasts of the training windows."""
        stacked = np.column_stack([windows[:, -1, :], self.out_of_fold(windows, targets, val_windows,
                                                                       val_targets)])
        self.attention.fit(windows, targets, val_windows, val_targets)
        self.booster = fit_booster(stacked, targets, self._stacked(val_windows), val_targets,
                                   self.booster_params)
        return self

    def predict_returns(self, windows: np.ndarray) -> np.ndarray:
        """Predicted next-day log-returns ``[n]`` for windows ``[n, lookback, features]``."""
        if self.booster is None:
            raise RuntimeError("attention_xgboost is not fitted")
        return self.booster.predict(self._stacked(windows)).astype("float64")

    def components(self) -> dict[str, Any]:
        """The native objects to store: the booster (registered) and the network it reads."""
        return {"model": self.booster, "attention": self.attention.network}

    @classmethod
    def from_components(cls, name: str, params: dict[str, Any],
                        components: dict[str, Any]) -> AttentionXGBoost:
        """Rebuild a fitted hybrid from stored parameters and its loaded booster and network."""
        booster = {k: v for k, v in params["booster"].items() if k != "lookback"}
        model = cls(attention=params["attention"], booster=booster)
        model.attention.network = components["attention"]
        model.booster = components["model"]
        return model
