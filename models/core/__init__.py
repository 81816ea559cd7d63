"""The per-bar forecasting core: plain Python and numpy, shared by the stream worker and the backtest.

- :mod:`~models.core.bar`: the validated daily bar.
- :mod:`~models.core.deadletter`: :class:`~models.core.deadletter.DeadLetter`, a rejected row or message.
- :mod:`~models.core.config`: :class:`~models.core.config.CoreConfig`, what the core is told.
- :mod:`~models.core.step`: :func:`~models.core.step.step` and :func:`~models.core.step.step_many`,
  one bar of one or many tickers; :func:`~models.core.step.step_guarded`, the same with a bar the
  step raises on set aside; :func:`~models.core.step.refit` on demand.
- :mod:`~models.core.state`: :class:`~models.core.state.TickerState`, a ticker's versioned memory.
- :mod:`~models.core.arima`: incremental ARIMA (cheap refit, one Kalman step per bar).
- :mod:`~models.core.features`: :data:`~models.core.features.FEATURE_NAMES` and the causal rows.
- :mod:`~models.core.intervals`: the calibration of the prediction intervals (level, shape, offsets).
- :mod:`~models.core.scoring`: score records of predictions against the next close.
- :mod:`~models.core.records`: :class:`~models.core.records.Prediction` and
  :class:`~models.core.records.Score`, the typed records, and the JSON Schema structure of a record.
- :mod:`~models.core.metrics`: point and interval metrics as numpy functions.
- :mod:`~models.core.model_slot`: :class:`~models.core.model_slot.PointModel`, the slot for other models.

Nothing here imports Kafka, Faust, TensorFlow or MLflow.
"""
