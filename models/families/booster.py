"""The XGBoost stage that the tree families share: its parameters and its early-stopped fit.

``xgboost`` (:mod:`models.families.boosted`) fits it on a flattened window; the hybrids
``arima_residual`` (:mod:`models.families.arima`) and ``attention_xgboost``
(:mod:`models.families.hybrid`) fit it on day t's features beside another model's forecast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Hyper-parameters of the XGBoost stage and their defaults (the ``xgboost`` family's too; its
#: ``lookback`` is the window it flattens, 1 in the hybrids).
DEFAULTS: dict[str, Any] = {
    "lookback": 1,
    "n_estimators": 400,
    "max_depth": 3,
    "learning_rate": 0.03,
    "subsample": 0.8,
    "early_stopping_rounds": 30,
    "seed": 0,
}


def day_t_booster_params(family: str, booster: dict[str, Any] | None) -> dict[str, Any]:
    """The parameters of a hybrid's XGBoost stage, which reads day t only (its lookback is 1).

    >>> day_t_booster_params("h", {"max_depth": 2})["lookback"], day_t_booster_params("h", None)["lookback"]
    (1, 1)
    >>> day_t_booster_params("h", {"lookback": 5})
    Traceback (most recent call last):
    ...
    ValueError: the booster of h reads day t only; its lookback cannot be set
    """
    booster = dict(booster or {})
    if "lookback" in booster:
        raise ValueError(f"the booster of {family} reads day t only; its lookback cannot be set")
    unknown = set(booster) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown booster parameters: {', '.join(sorted(unknown))}")
    return {**DEFAULTS, **booster, "lookback": 1}


def fit_booster(rows: np.ndarray, targets: np.ndarray, val_rows: np.ndarray, val_targets: np.ndarray,
                params: dict[str, Any]) -> Any:
    """An ``XGBRegressor`` fitted on tabular rows, early-stopped on the validation rows."""
    # XGBoost loads when a booster is fitted, not when the families are listed (start-up of the CLI).
    import xgboost

    if len(targets) == 0 or len(val_targets) == 0:
        raise ValueError("no rows to train or validate on")
    if not (np.isfinite(rows).all() and np.isfinite(val_rows).all()):
        raise ValueError("features must be finite (drop warm-up rows first)")
    booster = xgboost.XGBRegressor(
        n_estimators=params["n_estimators"], max_depth=params["max_depth"],
        learning_rate=params["learning_rate"], subsample=params["subsample"],
        early_stopping_rounds=params["early_stopping_rounds"], random_state=params["seed"],
        n_jobs=1,  # the machines this runs on are small and shared; one thread is predictable
    )
    booster.fit(rows, targets, eval_set=[(val_rows, val_targets)], verbose=False)
    return booster
