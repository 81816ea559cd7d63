"""Everything the core remembers about one ticker between two bars, as a small serialisable value.

A :class:`TickerState` is what the stream worker keeps in its Faust table (as :meth:`TickerState.to_bytes`)
and what ``forecaster backtest`` keeps in a dict: the same value, so both paths compute the same next
step. :func:`~models.core.step.step` never changes a state it is given; it returns a new one, and the
arrays it makes are read-only so that nobody else changes them either.

The byte form is a fixed header (magic, :data:`VERSION`), an orjson object with the scalars, and the
arrays as raw little-endian float64. Bytes that are no state of this format are refused with a
:class:`StateDecodeError` that says what is wrong, never misread: a state of another format version
(:class:`StateVersionError`), bytes cut short, or garbage.

Examples
--------
>>> import datetime as dt
>>> from models.core.bar import Bar
>>> from models.core.config import CoreConfig
>>> from models.core.step import step
>>> bar = Bar("MSFT", dt.date(2013, 2, 8), 27.35, 27.71, 27.31, 27.55, 33318306)
>>> state = step(None, bar, CoreConfig(model="naive")).state
>>> TickerState.from_bytes(state.to_bytes()) == state
True
>>> TickerState.from_bytes(b"FTS\\x09" + state.to_bytes()[4:])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
models.core.state.StateVersionError: ticker state format version 9 is not supported ...
>>> TickerState.from_bytes(state.to_bytes()[:-8])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
models.core.state.StateDecodeError: ticker state cut short: ... bytes, its array ... needs ...
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson

#: Format version of :meth:`TickerState.to_bytes`; bump it when fields change meaning.
VERSION = 3
_MAGIC = b"FTS"
_HEADER = struct.Struct("<3sBI")  # magic, version, length of the orjson part


class StateDecodeError(ValueError):
    """Stored bytes that cannot be read back as what they should hold (a ticker's state; the worker's
    partition positions raise a subclass of their own): cut short, garbage, or another format."""


class StateVersionError(StateDecodeError):
    """Bytes written by a different (or no) ticker-state format."""


class LastPrediction(NamedTuple):
    """The prediction the ticker is waiting to score against its next bar (a tuple: cheap to make)."""

    as_of: dt.date
    log_centre: float          # log of the intervals' centre (the last close, or the prediction)
    scale: float               # the one-step standard deviation (log units) the intervals used
    predicted_close: float
    naive_close: float         # the close of ``as_of``: the naive forecast of the same day
    levels: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    model: str
    model_version: str
    warmup: bool
    vol_regime: str | None     # calm, middle or volatile (models.core.volatility), None before known


@dataclass(slots=True, eq=False)
class TickerState:
    """One ticker's memory. Never change one: :func:`~models.core.step.step` builds a new state, and
    the arrays it and :meth:`from_bytes` make are read-only.

    Attributes
    ----------
    ticker, last_date
        Whose state this is and the date of the last bar applied (None before the first bar).
    bars, refits, failed_refits, since_refit
        Bars applied; successful and failed ARIMA fits; bars since the last fit attempt.
    last_close, last_volume
        The last bar's close and volume (the naive forecast and the next day's changes).
    log_closes
        The last ``window`` log closes, oldest first: the ARIMA's fitting window.
    arima_params, arima_state, arima_cov
        ``(phi, theta, sigma2)``, the predicted ARMA state and its covariance; None before the first fit.
    variance_ewmas
        The volatility model's exponentially weighted sums of daily variance, one per decay
        (:mod:`models.core.volatility`; divided by their weight ``1 - decay ** bars`` when read).
    residual_sum, residual_weight, zero_weight, residuals, interval_offsets
        The intervals' calibration (:class:`~models.core.intervals.Calibration`): the weighted sum
        of past non-zero absolute standardized residuals (log error / scale) and of their weights,
        the weight of the zero ones, how many there were, and each level's online conformal offset
        (empty before the first bar).
    features, feature_rows
        The last feature rows (as many as the model's lookback) and how many rows were ever made.
    last_prediction
        The prediction waiting to be scored.
    """

    ticker: str
    last_date: dt.date | None
    bars: int
    refits: int
    failed_refits: int
    since_refit: int
    last_close: float
    last_volume: float
    log_closes: np.ndarray
    arima_params: np.ndarray | None
    arima_state: np.ndarray | None
    arima_cov: np.ndarray | None
    variance_ewmas: np.ndarray
    residual_sum: float
    residual_weight: float
    zero_weight: float
    residuals: int
    interval_offsets: np.ndarray
    features: np.ndarray
    feature_rows: int
    last_prediction: LastPrediction | None

    @classmethod
    def empty(cls, ticker: str, feature_width: int, volatility_horizons: int) -> TickerState:
        """The state before a ticker's first bar: nothing seen, so nothing known (NaN, or sums of 0)."""
        nan = float("nan")
        return cls(ticker=ticker, last_date=None, bars=0, refits=0, failed_refits=0, since_refit=0,
                   last_close=nan, last_volume=nan, log_closes=np.empty(0), arima_params=None,
                   arima_state=None, arima_cov=None, variance_ewmas=np.zeros(volatility_horizons),
                   residual_sum=0.0, residual_weight=0.0, zero_weight=0.0, residuals=0,
                   interval_offsets=np.empty(0), features=np.empty((0, feature_width)), feature_rows=0,
                   last_prediction=None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TickerState):
            return NotImplemented
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, np.ndarray) or isinstance(theirs, np.ndarray):
                if mine is None or theirs is None or not np.array_equal(mine, theirs, equal_nan=True):
                    return False
            elif mine != theirs:
                return False
        return True

    def to_bytes(self) -> bytes:
        """Compact bytes for a state store; :meth:`from_bytes` reads them back exactly."""
        # The worker writes a state per ticker per batch: one pass over each kind of field.
        header: dict[str, Any] = {name: getattr(self, name) for name in _SCALARS}
        blobs = []
        for name in _ARRAY_ORDER:
            value = getattr(self, name)
            header[name] = None if value is None else value.shape
            if value is not None:
                blobs.append(value.astype("<f8", copy=False).tobytes())
        prediction = self.last_prediction
        header["last_prediction"] = None if prediction is None else prediction._asdict()
        meta = orjson.dumps(header)
        return _HEADER.pack(_MAGIC, VERSION, len(meta)) + meta + b"".join(blobs)

    @classmethod
    def from_bytes(cls, data: bytes) -> TickerState:
        """The state :meth:`to_bytes` wrote.

        Raises
        ------
        StateVersionError
            The bytes are not a ticker state, or one of another format version.
        StateDecodeError
            The bytes are a ticker state's of this version, but cut short or corrupted.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StateDecodeError(f"a ticker state is bytes, not {type(data).__name__}")
        if len(data) < _HEADER.size or data[:3] != _MAGIC:
            raise StateVersionError("these bytes are not a ticker state (bad magic)")
        _, version, meta_size = _HEADER.unpack_from(data)
        if version != VERSION:
            raise StateVersionError(
                f"ticker state format version {version} is not supported (this code reads version "
                f"{VERSION}); rebuild the state by replaying the ticker's bars")
        try:
            return cls._decode(data, meta_size)
        except StateDecodeError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            # orjson's JSONDecodeError is a ValueError; a wrong shape or field type surfaces as one
            # of the others. Any of them means bytes this code did not write.
            raise StateDecodeError(f"ticker state corrupted: {type(error).__name__}: {error}") from error

    @classmethod
    def _decode(cls, data: bytes, meta_size: int) -> TickerState:
        end = _HEADER.size + meta_size
        if end > len(data):
            raise StateDecodeError(f"ticker state cut short: {len(data)} bytes, its header announces "
                                   f"{meta_size} bytes of fields after the {_HEADER.size} of the header")
        header = orjson.loads(data[_HEADER.size : end])
        if not isinstance(header, dict) or header.keys() != _KEYS:
            raise StateDecodeError("ticker state corrupted: its fields are not those of a ticker state")
        offset = end
        values = {}
        for name in _FIELDS:  # the worker decodes a state per ticker per batch: no numpy on shapes
            value = header[name]
            if name in _ARRAYS and value is not None:
                count = math.prod(value)
                if offset + 8 * count > len(data):
                    raise StateDecodeError(
                        f"ticker state cut short: {len(data)} bytes, its array {name} needs "
                        f"{offset + 8 * count}")
                value = np.frombuffer(data, dtype="<f8", count=count, offset=offset).reshape(value)
                offset += 8 * count
            values[name] = value
        if offset != len(data):
            raise StateDecodeError(f"ticker state corrupted: {len(data) - offset} bytes after its last array")
        if values["last_date"] is not None:
            values["last_date"] = dt.date.fromisoformat(values["last_date"])
        if values["last_prediction"] is not None:
            lp = values["last_prediction"]
            lp.update(as_of=dt.date.fromisoformat(lp["as_of"]),
                      **{k: tuple(lp[k]) for k in ("levels", "lower", "upper")})
            values["last_prediction"] = LastPrediction(**lp)
        return cls(**values)

_FIELDS = tuple(f.name for f in dataclasses.fields(TickerState))
_ARRAYS = frozenset({"log_closes", "arima_params", "arima_state", "arima_cov", "variance_ewmas",
                     "interval_offsets", "features"})
_ARRAY_ORDER = tuple(name for name in _FIELDS if name in _ARRAYS)  # the order of the raw arrays
_SCALARS = tuple(name for name in _FIELDS if name not in _ARRAYS and name != "last_prediction")
_KEYS = frozenset(_FIELDS)  # the orjson part's keys: every field, the arrays by their shapes
