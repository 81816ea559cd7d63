"""Train one model family on bars, judge it against naive on a later test window, log and register it.

:func:`train` is what ``forecaster train`` and the demo call; :func:`train_on_table` is the same
after the (core-made) feature table exists, so a benchmark can build the table once and train every
family on it.

The order of events keeps everything causal:

1. features come from the streaming core's own ``step`` (:func:`models.dataset.feature_table`);
2. samples are split by target date into train, validation (the end of the pre-test period, for
   early stopping) and test (:func:`models.evaluation.split_by_date`);
3. the model fits its scalers and weights on the training samples only;
4. the test samples are predicted in one batch and scored as next closes beside naive.

What MLflow receives, in one run of the given experiment: parameters (family, hyper-parameters,
split, tickers, core settings); pooled test metrics of the model (``test_*``) and of naive
(``naive_*``; MAE, RMSE and MSE in the prices' currency), the scale-free panel figures
(``test_relative_mae``, ``test_mase``, ``naive_mase``, ``test_tickers_beating_naive``,
``panel_dm_statistic``, ``panel_dm_p_value``; :class:`models.evaluation.PanelScore`),
``per_ticker.json`` (each ticker's scores and Diebold-Mariano test), ``naive_scales.json`` (each
ticker's naive MAE over the training period, the scale of MASE, so promotion scales as training
did); ``predicted_vs_actual.png`` and ``error_distribution.png``; ``reference.json`` (the training
features' quantile bins, the drift monitor's reference); ``test_set.npz`` (the test window's
feature rows, so that ``forecaster promote`` can score any model on exactly these days); and the
model in its native flavour, registered as a new version of ``settings.model_name``.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import registry
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.metrics import naive_scale
from models.dataset import FeatureTable, Samples, feature_table
from models.drift import Reference
from models.evaluation import DateSplit, Evaluation, InsufficientHistory, evaluate, figures, split_by_date
from models.families import create

# MLflow and matplotlib (slow to import) load inside the functions that log and draw.

#: Feature rows stored before each ticker's first test day in ``test_set.npz``: enough for a model
#: of up to this many + 1 rows of lookback (the ARIMA family's default is 252) to be scored there.
TEST_HISTORY = 255
#: Quantile bins per feature in ``reference.json``.
REFERENCE_BINS = 10


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run produced.

    Attributes
    ----------
    run_id, version
        The MLflow run and the registered version of ``settings.model_name``.
    family
        The model family trained.
    split
        The train / validation / test periods (by target date).
    counts
        Samples in ``train``, ``validation`` and ``test``.
    evaluation
        The model and naive on the test window (metrics, Diebold-Mariano, closes).
    train_seconds
        Wall time of ``fit``.
    model
        The fitted model (a ``PointModel``).
    """

    run_id: str
    version: str
    family: str
    split: DateSplit
    counts: dict[str, int]
    evaluation: Evaluation
    train_seconds: float
    model: Any

    def summary(self) -> str:
        """The test scores: scale-free over the panel of tickers, then the pooled dollar figures."""
        m, n, panel = self.evaluation.metrics, self.evaluation.naive_metrics, self.evaluation.panel
        verdict = "beats" if self.evaluation.beats_naive() else "does not beat"
        return (f"{self.family} version {self.version} (run {self.run_id}): test {self.split.test_start}.."
                f"{self.split.test_end}, {self.counts['test']} predictions of {panel.tickers} tickers\n"
                f"  {panel.summary()}: {verdict} naive\n"
                f"  pooled MAE $ {m['mae']:.5f} vs naive {n['mae']:.5f}, RMSE $ {m['rmse']:.5f} vs "
                f"{n['rmse']:.5f} (dollar figures: the highest-priced tickers weigh most)")


def select_bars(bars: Sequence[Bar], tickers: Collection[str] | None) -> list[Bar]:
    """The bars of ``tickers`` (all when None); ValueError names tickers that have no bars."""
    if tickers is None:
        return list(bars)
    wanted = set(tickers)
    missing = wanted - {bar.ticker for bar in bars}
    if missing:
        raise ValueError(f"no bars for ticker(s) {', '.join(sorted(missing))}")
    return [bar for bar in bars if bar.ticker in wanted]


def model_params(family: str, params: dict[str, Any] | None, epochs: int | None) -> dict[str, Any]:
    """The family's parameters with ``epochs`` set on its neural network, if it has one.

    Examples
    --------
    >>> model_params("bigru", {"units": 8}, 3)
    {'units': 8, 'epochs': 3}
    >>> model_params("attention_xgboost", None, 2)
    {'attention': {'epochs': 2}}
    >>> model_params("xgboost", None, 2)
    {}
    """
    params = dict(params or {})
    if epochs is None:
        return params
    if family in ("cnn_bilstm_attention", "bigru"):
        params["epochs"] = epochs
    elif family == "attention_xgboost":
        params["attention"] = {**params.get("attention", {}), "epochs": epochs}
    return params


def feature_reference(rows: np.ndarray, names: Sequence[str], bins: int = REFERENCE_BINS) -> dict[str, Any]:
    """Each feature's training distribution as the drift monitor reads it (quantile edges, proportions).

    Built with :meth:`models.drift.Reference.from_sample`, the class the monitor compares against,
    so that the two agree on what a bin is.
    """
    return {name: Reference.from_sample(rows[:, i], bins=bins).to_dict() for i, name in enumerate(names)}


def _flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def train(bars: Sequence[Bar], family: str, settings: Any, *, experiment: str = "forecaster",
          tickers: Collection[str] | None = None, epochs: int | None = None,
          params: dict[str, Any] | None = None, test_start: dt.date | None = None,
          test_days: int | None = 252, validation_fraction: float = 0.1) -> TrainOutcome:
    """Make the core's features of ``bars``, then :func:`train_on_table`.

    Parameters
    ----------
    bars
        Validated bars of one or more tickers, any order.
    family
        A key of :data:`models.families.FAMILIES`.
    settings
        The system settings: MLflow store, registered model name, the core's ARIMA settings.
    experiment
        MLflow experiment of the run (created when missing).
    tickers
        Train on these tickers only (default: all in ``bars``).
    epochs
        Epochs of the family's neural network (ignored by families without one).
    params
        Hyper-parameters overriding the family's defaults.
    test_start, test_days, validation_fraction
        The date split; see :func:`models.evaluation.split_by_date` (default: the last 252 target
        days are the test window).
    """
    table = feature_table(select_bars(bars, tickers), CoreConfig.from_settings(settings, model="arima"))
    return train_on_table(table, family, settings, experiment=experiment, epochs=epochs, params=params,
                          test_start=test_start, test_days=test_days, validation_fraction=validation_fraction)


def naive_scales(table: FeatureTable, train_end: dt.date) -> dict[str, float]:
    """Each ticker's naive MAE ``|close[t+1] - close[t]|`` over target dates to ``train_end``: MASE's scale.

    From the table's closes, not its samples, so that no day is left out for lack of features.

    Examples
    --------
    >>> days = np.array(["2024-01-0%d" % d for d in (1, 2, 3, 4, 1, 2)], dtype="datetime64[D]")
    >>> table = FeatureTable(np.zeros((6, 1)), np.array(["A"] * 4 + ["B"] * 2), days,
    ...                      np.array([10.0, 11, 10, 30, 5, 6]), ("x",))
    >>> naive_scales(table, dt.date(2024, 1, 3))
    {'A': 1.0, 'B': 1.0}
    """
    scales = {}
    for ticker in dict.fromkeys(table.tickers.tolist()):
        rows = np.flatnonzero(table.tickers == ticker)
        pairs = rows[:-1][table.dates[rows[1:]] <= np.datetime64(train_end, "D")]
        if len(pairs):
            scales[ticker] = naive_scale(table.closes[pairs], table.closes[pairs + 1])
    return scales


def split_samples(samples: Samples, split: DateSplit) -> dict[str, Samples]:
    """The samples of each period of ``split``."""
    return {
        "train": samples.between(dt.date.min, split.train_end),
        "validation": samples.between(split.validation_start, split.test_start - dt.timedelta(days=1)),
        "test": samples.between(split.test_start, split.test_end),
    }


def train_on_table(table: FeatureTable, family: str, settings: Any, *, experiment: str = "forecaster",
                   epochs: int | None = None, params: dict[str, Any] | None = None,
                   test_start: dt.date | None = None, test_days: int | None = 252,
                   validation_fraction: float = 0.1) -> TrainOutcome:
    """Fit ``family`` on the table's training period, evaluate on its test period, log and register."""
    import mlflow

    model = create(family, **model_params(family, params, epochs))
    samples = table.samples(model.lookback)
    if len(samples) == 0:
        raise InsufficientHistory(f"no complete {model.lookback}-row windows in the data: too few bars per "
                                  "ticker")
    split = split_by_date(samples.target_dates.astype(object).tolist(), test_start=test_start,
                          test_days=test_days, validation_fraction=validation_fraction)
    parts = split_samples(samples, split)
    for name, part in parts.items():
        if len(part) == 0:
            raise InsufficientHistory(f"the {name} period of {split} holds no samples")
    started = time.perf_counter()
    model.fit(parts["train"].windows, parts["train"].returns,
              parts["validation"].windows, parts["validation"].returns)
    train_seconds = time.perf_counter() - started
    test = parts["test"]
    scales = naive_scales(table, split.train_end)
    evaluation = evaluate(model.predict_returns(test.windows), test, scales)
    counts = {name: len(part) for name, part in parts.items()}

    with mlflow.start_run(experiment_id=registry.experiment_id(settings, experiment),
                          run_name=f"{family}-{split.test_start}") as run:
        mlflow.log_params({
            "family": family, **{f"model.{k}": v for k, v in _flat_params(model.params).items()},
            "tickers": ",".join(sorted(set(table.tickers.tolist())))[:5000],
            "train_end": split.train_end, "validation_start": split.validation_start,
            "test_start": split.test_start, "test_end": split.test_end,
            **{f"samples.{k}": v for k, v in counts.items()},
            "core.window": settings.window, "core.refit_every": settings.refit_every,
            "core.arima_order": ",".join(map(str, settings.arima_order)),
            **({"epochs_trained": model.epochs_trained} if hasattr(model, "epochs_trained") else {}),
        })
        mlflow.log_metrics({
            **{f"test_{k}": v for k, v in evaluation.metrics.items()},
            **{f"naive_{k}": v for k, v in evaluation.naive_metrics.items()},
            **{f"test_{k}": v for k, v in evaluation.panel.metrics().items()},
            "naive_mase": evaluation.panel.naive_mase, "panel_dm_statistic": evaluation.panel.dm.statistic,
            "panel_dm_p_value": evaluation.panel.dm.p_value, "train_seconds": train_seconds,
        })
        mlflow.log_dict({s.ticker: s.metrics() for s in evaluation.per_ticker}, "per_ticker.json")
        mlflow.log_dict(scales, "naive_scales.json")
        for filename, figure in figures(evaluation, family).items():
            mlflow.log_figure(figure, filename)
        train_rows = table.features[(table.dates <= np.datetime64(split.train_end, "D"))]
        train_rows = train_rows[np.isfinite(train_rows).all(axis=1)]
        mlflow.log_dict(feature_reference(train_rows, table.feature_names), "reference.json")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "test_set.npz"
            table.history_for(split.test_start, split.test_end, TEST_HISTORY).save(path)
            mlflow.log_artifact(str(path))
        version = registry.log_and_register(model, settings, table.feature_names, tags={
            "test_start": str(split.test_start), "test_end": str(split.test_end),
            "test_relative_mae": repr(evaluation.panel.relative_mae),
            "test_mae": repr(evaluation.metrics["mae"]), "naive_mae": repr(evaluation.naive_metrics["mae"]),
            "tickers": json.dumps(sorted(set(table.tickers.tolist())))[:5000],
        })
    import matplotlib.pyplot as plt

    plt.close("all")
    model.version = version
    return TrainOutcome(run_id=run.info.run_id, version=version, family=family, split=split, counts=counts,
                        evaluation=evaluation, train_seconds=train_seconds, model=model)
