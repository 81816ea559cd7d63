"""Keras window models: the attention CNN-BiLSTM and the BiGRU, one builder and one trainer.

Both read a window of ``lookback`` feature rows (oldest first, the last row is day t) and predict
the next-day log-return. Only the layer stack between the input and the output differs
(:data:`STACKS`); everything else is shared:

- the feature scaler is a Keras ``Normalization`` layer whose mean and variance are computed on the
  *training* windows only and stored inside the model, so the served model takes raw features and
  cannot be scaled with statistics it must not know;
- the network learns the standardized target (returns are ~1e-2, too small for Adam's epsilon);
  the served model appends a ``Rescaling`` layer with the training target's mean and scale, so it
  returns log-returns directly;
- training stops early on the validation loss and keeps the best weights.

The attention is built from stock Keras layers (``Dense -> Softmax over time -> Dot``), so the saved
``.keras`` file loads with plain ``keras.saving.load_model``: no custom objects to register.
TensorFlow is imported when a model is built or loaded, never at module import; it comes with the
``neural`` extra, and without it these families end with :class:`MissingExtraError`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

#: What to install for these families (the rest of the system runs without it).
NEURAL_EXTRA = "pip install 'stream-forecaster[neural]'"


class MissingExtraError(RuntimeError):
    """A feature needs an optional dependency that is not installed; the message says which extra."""


def require_neural(what: str) -> None:
    """Raise :class:`MissingExtraError` unless Keras and its TensorFlow backend are installed.

    Looks the packages up without importing them, so the check costs microseconds, not TensorFlow's
    seconds of start-up.
    """
    missing = [name for name in ("keras", "tensorflow") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(f"{what} needs TensorFlow and Keras ({', '.join(missing)} not installed): "
                                f"{NEURAL_EXTRA}")

#: Hyper-parameters of :class:`KerasWindowModel` and their defaults (the paper's: 6 steps, 50 units).
DEFAULTS: dict[str, Any] = {
    "lookback": 6,
    "units": 50,
    "filters": 64,
    "kernel_size": 1,
    "epochs": 50,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "patience": 5,
    "seed": 0,
}


def _cnn_bilstm_attention(x: Any, params: dict[str, Any]) -> Any:
    """Conv1D -> bidirectional LSTM over every step -> temporal attention -> context vector."""
    from keras import layers

    x = layers.Conv1D(params["filters"], params["kernel_size"], padding="same", activation="relu")(x)
    states = layers.Bidirectional(layers.LSTM(params["units"], return_sequences=True))(x)
    scores = layers.Dense(1, activation="tanh")(states)
    weights = layers.Softmax(axis=1, name="attention_weights")(scores)
    context = layers.Dot(axes=1)([weights, states])
    return layers.Flatten()(context)


def _bigru(x: Any, params: dict[str, Any]) -> Any:
    """A bidirectional GRU whose final states summarise the window."""
    from keras import layers

    return layers.Bidirectional(layers.GRU(params["units"]))(x)


#: Layer stack of each architecture: (symbolic input after scaling, params) -> symbolic summary.
STACKS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "cnn_bilstm_attention": _cnn_bilstm_attention,
    "bigru": _bigru,
}


def _positive_int(params: dict[str, Any], key: str) -> None:
    value = params[key]
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")


class KerasWindowModel:
    """A Keras network over a window of causal features that predicts the next log-return.

    Parameters
    ----------
    architecture
        A key of :data:`STACKS`: ``"cnn_bilstm_attention"`` or ``"bigru"``; also the model's name.
    **params
        Overrides of :data:`DEFAULTS` (``lookback``, ``units``, ``filters``, ``kernel_size``,
        ``epochs``, ``batch_size``, ``learning_rate``, ``patience``, ``seed``).

    Examples
    --------
    >>> KerasWindowModel("bigru", lookback=3).lookback
    3
    >>> KerasWindowModel("lstm")
    Traceback (most recent call last):
    ...
    ValueError: unknown architecture 'lstm'; expected one of cnn_bilstm_attention, bigru
    >>> KerasWindowModel("bigru", units=0)
    Traceback (most recent call last):
    ...
    ValueError: units must be a positive integer, got 0
    """

    def __init__(self, architecture: str, **params: Any) -> None:
        if architecture not in STACKS:
            raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(STACKS)}")
        require_neural(f"the {architecture} model family")
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown parameters for {architecture}: {', '.join(sorted(unknown))}")
        self.name = architecture
        self.version = ""  # the registry version, set when loaded from MLflow
        self.params = {**DEFAULTS, **params}
        for key in ("lookback", "units", "filters", "kernel_size", "epochs", "batch_size", "patience"):
            _positive_int(self.params, key)
        if not self.params["learning_rate"] > 0:
            raise ValueError(f"learning_rate must be positive, got {self.params['learning_rate']!r}")
        self.lookback: int = int(self.params["lookback"])
        self.network: Any = None
        self.epochs_trained = 0

    def _build(self, n_features: int, feature_rows: np.ndarray, targets: np.ndarray) -> Any:
        """The training network (standardized output) and set ``self.network`` (served, rescaled)."""
        import keras
        from keras import layers

        inputs = keras.Input(shape=(self.lookback, n_features), name="window")
        # Constant columns (variance 0) would divide by zero; they carry no information anyway.
        variance = np.where(feature_rows.var(axis=0) > 0, feature_rows.var(axis=0), 1.0)
        scaled = layers.Normalization(axis=-1, mean=feature_rows.mean(axis=0), variance=variance)(inputs)
        summary = STACKS[self.name](scaled, self.params)
        standardized = layers.Dense(1)(summary)
        scale = float(targets.std()) or 1.0
        returns = layers.Rescaling(scale=scale, offset=float(targets.mean()))(standardized)
        self.network = keras.Model(inputs, layers.Flatten()(returns), name=self.name)
        self._target_mean, self._target_scale = float(targets.mean()), scale
        return keras.Model(inputs, layers.Flatten()(standardized))

    def fit(self, windows: np.ndarray, targets: np.ndarray,
            val_windows: np.ndarray, val_targets: np.ndarray) -> KerasWindowModel:
        """Train on ``windows -> targets``; stop early on the validation windows.

        Parameters
        ----------
        windows, val_windows
            float ``[n, lookback, n_features]``: training and validation windows (validation after
            training in time).
        targets, val_targets
            ``[n]`` next-day log-returns.
        """
        import keras

        _check_windows(windows, targets, self.lookback)
        _check_windows(val_windows, val_targets, self.lookback)
        keras.utils.set_random_seed(int(self.params["seed"]))
        # The scaler sees the training rows only: every row of every training window.
        rows = windows.reshape(-1, windows.shape[-1])
        trainer = self._build(windows.shape[-1], rows, targets)
        trainer.compile(optimizer=keras.optimizers.Adam(self.params["learning_rate"]), loss="mse")
        stop = keras.callbacks.EarlyStopping(patience=self.params["patience"], restore_best_weights=True)
        history = trainer.fit(
            windows.astype("float32"), ((targets - self._target_mean) / self._target_scale).astype("float32"),
            validation_data=(val_windows.astype("float32"),
                             ((val_targets - self._target_mean) / self._target_scale).astype("float32")),
            epochs=self.params["epochs"], batch_size=self.params["batch_size"],
            shuffle=True, callbacks=[stop], verbose=0,
        )
        self.epochs_trained = len(history.history["loss"])
        return self

    def predict_returns(self, windows: np.ndarray) -> np.ndarray:
        """Predicted next-day log-returns ``[n]`` for windows ``[n, lookback, n_features]``."""
        if self.network is None:
            raise RuntimeError(f"{self.name} is not fitted")
        if windows.ndim != 3 or windows.shape[1] != self.lookback:
            raise ValueError(f"expected windows [n, {self.lookback}, features], got shape {windows.shape}")
        # The compiled graph, called once: an eager call or predict() costs about a hundred times
        # more per batch (docs/benchmarks.md, "Figures behind comments").
        predicted = self.network.predict_on_batch(windows.astype("float32"))
        return np.asarray(predicted, dtype="float64").reshape(-1)

    def components(self) -> dict[str, Any]:
        """The native objects to store: the served Keras network."""
        return {"model": self.network}

    @classmethod
    def from_components(cls, name: str, params: dict[str, Any],
                        components: dict[str, Any]) -> KerasWindowModel:
        """Rebuild a fitted model from stored parameters and its loaded Keras network."""
        model = cls(name, **params)
        model.network = components["model"]
        return model


def _check_windows(windows: np.ndarray, targets: np.ndarray, lookback: int) -> None:
    if windows.ndim != 3 or windows.shape[1] != lookback:
        raise ValueError(f"expected windows [n, {lookback}, features], got shape {windows.shape}")
    if targets.shape != (windows.shape[0],):
        raise ValueError(f"expected {windows.shape[0]} targets, got shape {targets.shape}")
    if len(targets) == 0:
        raise ValueError("no windows to train or validate on")
    if not (np.isfinite(windows).all() and np.isfinite(targets).all()):
        raise ValueError("windows and targets must be finite (drop warm-up rows first)")
