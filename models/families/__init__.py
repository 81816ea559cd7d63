"""Model families: every forecaster the project trains, behind one fit/predict interface.

Each family's model has ``name``, ``version``, ``lookback``, ``params``,
``fit(windows, targets, val_windows, val_targets)``, ``predict_returns(windows)`` (the core's
``PointModel``), ``components()`` (the native objects stored in MLflow) and
``from_components(name, params, components)`` (the inverse). :data:`FAMILIES` says how each
family is made and in which MLflow flavour each of its components is stored.

Examples
--------
>>> sorted(FAMILIES)
['arima', 'arima_residual', 'attention_xgboost', 'bigru', 'cnn_bilstm_attention', 'xgboost']
>>> create("bigru", lookback=3).name
'bigru'
>>> create("prophet")
Traceback (most recent call last):
...
ValueError: unknown model family 'prophet'; expected one of arima, arima_residual, attention_xgboost, bigru, \
cnn_bilstm_attention, xgboost
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models.families.arima import ArimaModel, ArimaResidualModel
from models.families.boosted import XGBoostWindowModel
from models.families.hybrid import AttentionXGBoost
from models.families.neural import KerasWindowModel


@dataclass(frozen=True)
class Family:
    """How a family is made (``create``), restored (``restore``) and stored (``flavours``)."""

    description: str
    create: Callable[..., Any]
    restore: Callable[[str, dict[str, Any], dict[str, Any]], Any]
    #: component name -> MLflow flavour ("keras" or "xgboost"); "model" is the registered one.
    flavours: dict[str, str]


FAMILIES: dict[str, Family] = {
    "arima": Family(
        "the core's incremental ARIMA (its forecast is a feature; nothing is fitted offline)",
        ArimaModel, ArimaModel.from_components, {},
    ),
    "arima_residual": Family(
        "ARIMA forecast plus XGBoost on the ARIMA's next-day error",
        ArimaResidualModel, ArimaResidualModel.from_components, {"model": "xgboost"},
    ),
    "cnn_bilstm_attention": Family(
        "Conv1D -> BiLSTM -> temporal attention -> dense (Keras)",
        lambda **p: KerasWindowModel("cnn_bilstm_attention", **p), KerasWindowModel.from_components,
        {"model": "keras"},
    ),
    "bigru": Family(
        "bidirectional GRU -> dense (Keras)",
        lambda **p: KerasWindowModel("bigru", **p), KerasWindowModel.from_components, {"model": "keras"},
    ),
    "xgboost": Family(
        "XGBoost on the flattened feature window", XGBoostWindowModel, XGBoostWindowModel.from_components,
        {"model": "xgboost"},
    ),
    "attention_xgboost": Family(
        "XGBoost on the attention CNN-BiLSTM's forecast plus day t's features",
        AttentionXGBoost, AttentionXGBoost.from_components, {"model": "xgboost", "attention": "keras"},
    ),
}


def family(name: str) -> Family:
    """The :class:`Family` called ``name``; ValueError names the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; expected one of {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def create(name: str, **params: Any) -> Any:
    """An unfitted model of family ``name`` with ``params`` overriding its defaults; ValueError when
    the family takes no such parameters."""
    factory = family(name).create
    try:  # families made by a function of any keywords check them themselves
        inspect.signature(factory).bind(**params)
    except TypeError as error:
        raise ValueError(f"unknown parameters for {name}: {error}") from None
    return factory(**params)
