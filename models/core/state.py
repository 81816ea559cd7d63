"""Everything the core remembers about one ticker between two bars, as a small serialisable value.

A :class:`TickerState` is what the stream worker keeps in its Faust table (as :meth:`TickerState.to_bytes`)
and what ``forecaster backtest`` keeps in a dict: the same value, so both paths compute the same next
step. :func:`~models.core.step.step` never changes a state it is given; it returns a new one, and the
arrays it makes are read-only so that nobody else changes them either.

The byte form is a fixed header (magic, :data:`VERSION`), an orjson object with the scalars, and the
arrays as raw little-endian float64. A float JSON has no number for (an interval's upper bound past
the float range is infinite) is written as its word, ``"inf"``, ``"-inf"`` or ``"nan"``: orjson
would write null, which no step can take. Bytes that are no state of this format are refused with a
:class:`StateDecodeError` that says what is wrong, never misread: a state of another format version
(:class:`StateVersionError`), bytes cut short, garbage, or fields of the wrong type or shape.
Versions 3 (the last before horizons: read as a state of the one horizon 1) and 4 (the last before
the state recorded its ARIMA order) are still read, so that upgrading a running deployment keeps
every ticker's memory.

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
import operator
import struct
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
import orjson

#: Format version of :meth:`TickerState.to_bytes`; bump it when fields change meaning.
VERSION = 5
#: The older versions :meth:`TickerState.from_bytes` still reads (and migrates).
_READABLE = frozenset({3, 4, VERSION})
_MAGIC = b"FTS"
_HEADER = struct.Struct("<3sBI")  # magic, version, length of the orjson part


class StateDecodeError(ValueError):
    """Stored bytes that cannot be read back as what they should hold (a ticker's state; the worker's
    partition positions raise a subclass of their own): cut short, garbage, or another format."""


class StateVersionError(StateDecodeError):
    """Bytes written by a different (or no) ticker-state format."""


class LastPrediction(NamedTuple):
    """A prediction the ticker is waiting to score against its ``horizon``-th bar after ``as_of``.

    A state keeps its pending predictions as plain tuples of these fields, in this order
    (:data:`Pending`; :meth:`TickerState.pending_predictions` names them): the garbage collector
    untracks a plain tuple of plain values at its first pass, while it traverses a tuple subclass
    at every pass of its generation for the 1 to 20 bars it waits (docs/benchmarks.md).
    """

    as_of: dt.date
    horizon: int               # bars of the ticker ahead: the prediction is scored by the horizon-th next bar
    log_centre: float          # log of the intervals' centre (the last close, or the prediction)
    scale: float               # the h-day standard deviation (log units) the intervals used
    predicted_close: float
    naive_close: float         # the close of ``as_of``: the naive forecast of the same day
    levels: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    model: str
    model_version: str
    warmup: bool
    vol_regime: str | None     # calm, middle or volatile (models.core.volatility), None before known


#: A pending prediction as a state keeps it: :class:`LastPrediction`'s fields, in order, in a plain tuple.
Pending = tuple[dt.date, int, float, float, float, float, tuple[float, ...], tuple[float, ...],
                tuple[float, ...], str, str, bool, str | None]
#: Where a :data:`Pending` holds its horizon, its interval levels and its model's version (literals, so
#: that type checkers know what is there).
HORIZON: Final = 1
LEVELS: Final = 6
MODEL_VERSION: Final = 10


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
    arima_order
        The order ``(p, d, q)`` the three ARIMA fields belong to: the configuration's at the last bar.
        None before the first bar, and in a state of format version 3 or 4, which did not record it.
    variance_ewmas
        The volatility model's exponentially weighted sums of daily variance, one per decay
        (:mod:`models.core.volatility`; divided by their weight ``1 - decay ** bars`` when read).
    horizons
        The horizons (trading days ahead) of the calibration's rows, ascending; empty before the first bar.
    residual_sum, residual_weight, zero_weight, residuals, interval_offsets
        The intervals' calibration (:class:`~models.core.intervals.Calibration`), one row per horizon
        (``[horizons]``, the offsets ``[horizons, levels]``): the weighted sum of past non-zero
        absolute standardized residuals (log error / scale) and of their weights, the weight of the
        zero ones, how many there were, and each level's online conformal offset.
    features, feature_rows
        The last feature rows (as many as the model's lookback) and how many rows were ever made.
    pending
        The predictions waiting to be scored: per horizon ``h`` those of the last ``h`` bars, by
        horizon then oldest first.
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
    arima_order: tuple[int, int, int] | None
    variance_ewmas: np.ndarray
    horizons: tuple[int, ...]
    residual_sum: np.ndarray
    residual_weight: np.ndarray
    zero_weight: np.ndarray
    residuals: np.ndarray
    interval_offsets: np.ndarray
    features: np.ndarray
    feature_rows: int
    pending: tuple[Pending, ...]

    def pending_predictions(self) -> tuple[LastPrediction, ...]:
        """:attr:`pending` with its fields named."""
        return tuple(map(LastPrediction._make, self.pending))

    @classmethod
    def empty(cls, ticker: str, feature_width: int, volatility_horizons: int) -> TickerState:
        """The state before a ticker's first bar: nothing seen, so nothing known (NaN, or sums of 0)."""
        nan = float("nan")
        none = np.empty(0)
        return cls(ticker=ticker, last_date=None, bars=0, refits=0, failed_refits=0, since_refit=0,
                   last_close=nan, last_volume=nan, log_closes=none, arima_params=None, arima_state=None,
                   arima_cov=None, arima_order=None, variance_ewmas=np.zeros(volatility_horizons),
                   horizons=(), residual_sum=none, residual_weight=none, zero_weight=none, residuals=none,
                   interval_offsets=np.empty((0, 0)), features=np.empty((0, feature_width)), feature_rows=0,
                   pending=())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TickerState):
            return NotImplemented
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, np.ndarray) or isinstance(theirs, np.ndarray):
                if mine is None or theirs is None or not np.array_equal(mine, theirs, equal_nan=True):
                    return False
            elif mine != theirs and not (mine != mine and theirs != theirs):  # NaN equals NaN, as in arrays
                return False
        return True

    def to_bytes(self) -> bytes:
        """Compact bytes for a state store; :meth:`from_bytes` reads them back exactly."""
        # The worker writes a state per ticker per batch: one pass over each kind of field, and each
        # array's values copied once, from its own buffer where that holds them (float64, as made).
        header: dict[str, Any] = {name: getattr(self, name) for name in _SCALARS}
        for name in _FLOAT_SCALARS:
            header[name] = _written(header[name])
        blobs: list[Any] = []
        for name, value in zip(_ARRAY_ORDER, _arrays_of(self), strict=True):
            if value is None:
                header[name] = None
            else:
                header[name] = value.shape
                blobs.append(value if value.dtype is _F8 else value.astype(_F8).tobytes())
        header["pending"] = [_stored(p) for p in self.pending]  # field order: no keys repeated per prediction
        meta = orjson.dumps(header)
        head = _HEADER.pack(_MAGIC, VERSION, len(meta))
        try:
            return b"".join([head, meta, *blobs])
        except TypeError:  # an array not C-contiguous, whose buffer bytes.join refuses
            return b"".join([head, meta, *[blob.tobytes() if isinstance(blob, np.ndarray) else blob
                                           for blob in blobs]])

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
        # The arrays are views of the bytes: of a copy where the caller's buffer could change.
        data = data if type(data) is bytes else bytes(data)
        if len(data) < _HEADER.size or data[:3] != _MAGIC:
            raise StateVersionError("these bytes are not a ticker state (bad magic)")
        _, version, meta_size = _HEADER.unpack_from(data)
        if version not in _READABLE:
            raise StateVersionError(
                f"ticker state format version {version} is not supported (this code reads versions "
                f"{', '.join(map(str, sorted(_READABLE)))}); rebuild the state by replaying the ticker's "
                "bars")
        try:
            if version == 3:
                values = _from_version_3(_decode(data, meta_size, _V3))
            else:
                values = _decode(data, meta_size, _V5 if version == VERSION else _V4)
                values["arima_order"] = _arima_order(values.get("arima_order"))
                values["horizons"] = _horizons(values["horizons"])
                values["pending"] = tuple(_pending(row) for row in values["pending"])
            _check_fit(values)
            return cls(**values)
        except StateDecodeError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            # orjson's JSONDecodeError is a ValueError; a wrong shape or field type surfaces as one
            # of the others. Any of them means bytes this code did not write.
            raise StateDecodeError(f"ticker state corrupted: {type(error).__name__}: {error}") from error


class _Layout(NamedTuple):
    """The fields of one format version: all of them in order, and which are raw arrays."""

    fields: tuple[str, ...]
    arrays: frozenset[str]


def _decode(data: bytes, meta_size: int, layout: _Layout) -> dict[str, Any]:
    """The fields of bytes of ``layout``'s version: the scalars as orjson gives them, the arrays read
    only, ``last_date`` a date."""
    end = _HEADER.size + meta_size
    if end > len(data):
        raise StateDecodeError(f"ticker state cut short: {len(data)} bytes, its header announces "
                               f"{meta_size} bytes of fields after the {_HEADER.size} of the header")
    header = orjson.loads(data[_HEADER.size : end])
    if not isinstance(header, dict) or header.keys() != set(layout.fields):
        raise StateDecodeError("ticker state corrupted: its fields are not those of a ticker state")
    offset = end
    values = {}
    for name in layout.fields:
        value = header[name]
        if name in layout.arrays and value is not None:
            # Checked before any arithmetic: a negative size would read the rest of the bytes, and a
            # list or text in a shape would make the product a sequence of gigabytes.
            if (type(value) is not list or not 1 <= len(value) <= 2
                    or not all(type(size) is int and size >= 0 for size in value)):
                raise StateDecodeError(f"ticker state corrupted: the shape of its array {name} is "
                                       f"{value!r:.60}")
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
    # No ticker reaches 2**53 bars (one a second for 285 million years); a count past 2**64 - 1, which
    # a step's + 1 makes of orjson's largest, could not be written back: stored, it stopped every batch.
    if type(values["ticker"]) is not str or any(
            type(values[name]) is not int or not 0 <= values[name] <= MAX_COUNT for name in _INT_SCALARS):
        raise StateDecodeError("ticker state corrupted: its ticker is not text or a count not a whole number "
                               f"from 0 to {MAX_COUNT}")
    for name in _FLOAT_SCALARS:
        values[name] = _read_float(values[name])
    return values


def _horizons(value: Any) -> tuple[int, ...]:
    """The horizons as stored (a list of whole numbers), as a tuple."""
    if not isinstance(value, list) or any(type(h) is not int for h in value):
        raise StateDecodeError("ticker state corrupted: its horizons are not whole numbers")
    return tuple(value)


def _check_fit(values: dict[str, Any]) -> None:
    """Refuse a state whose fields do not fit together: one that no step could take, or that a step
    would take into NaN for good (a close that is no price, a sum that is not finite).

    What depends on the configuration (horizons, levels, the ARIMA order, the volatility means, the
    features' width) is left to :func:`~models.core.step.step`, which realigns a state to its
    configuration.
    """
    arima = [values[name] for name in ("arima_params", "arima_state", "arima_cov")]
    rows = len(values["horizons"])
    fits = (values["log_closes"].ndim == 1 and values["variance_ewmas"].ndim == 1
            and values["features"].ndim == 2
            and all(values[name].shape == (rows,) for name in _CALIBRATION_ROWS)
            and values["interval_offsets"].ndim == 2 and values["interval_offsets"].shape[0] == rows
            and (all(a is None for a in arima)
                 or (all(a is not None for a in arima) and arima[0].ndim == 1 and arima[1].ndim == 1
                     and arima[2].shape == (arima[1].size, arima[1].size))))
    if not fits:
        raise StateDecodeError("ticker state corrupted: the shapes of its arrays do not fit together")
    order = values["arima_order"]
    if order is not None and arima[0] is not None:
        p, d, q = order
        if (min(order) < 0 or arima[0].size != p + q + 1 or arima[1].size != max(p, q + 1)
                or values["log_closes"].size < d):
            raise StateDecodeError(f"ticker state corrupted: its ARIMA arrays are not those of its order "
                                   f"{order}")
    finite = [values[name] for name in (*_CALIBRATION_ROWS, "log_closes", "variance_ewmas",
                                        "interval_offsets")]
    finite += [a for a in arima if a is not None]
    if (not all(np.isfinite(array).all() for array in finite)
            or any((values[name] < 0).any() for name in (*_CALIBRATION_ROWS, "variance_ewmas"))):
        raise StateDecodeError("ticker state corrupted: an array holds a value that is not a finite number "
                               "(or a negative sum)")
    close, volume, seen = values["last_close"], values["last_volume"], values["bars"] > 0
    # NaN before a ticker's first bar; a price and a volume after it.
    if ((seen and (values["last_date"] is None or math.isnan(close) or math.isnan(volume)))
            or not (math.isnan(close) or 0.0 < close < math.inf)
            or not (math.isnan(volume) or 0.0 <= volume < math.inf)):
        raise StateDecodeError(f"ticker state corrupted: its last close {close!r} and volume {volume!r} are "
                               f"not those of a ticker after {values['bars']} bars")
    _check_pending(values["pending"], values["horizons"], values["last_date"])


def _check_pending(pending: tuple[Pending, ...], horizons: tuple[int, ...],
                   last_date: dt.date | None) -> None:
    """Refuse pending predictions out of their layout (by horizon, oldest first, at most ``h`` of
    horizon ``h``), which the step would score against another horizon's calibration."""
    queues: dict[int, list[dt.date]] = {}
    for p in pending:
        queues.setdefault(p[HORIZON], []).append(p[0])
    in_order = [p[HORIZON] for p in pending]
    if (in_order != sorted(in_order)
            or any(h not in horizons or len(days) > h or days != sorted(set(days))
                   or (last_date is None or days[-1] > last_date) for h, days in queues.items())):
        raise StateDecodeError("ticker state corrupted: its pending predictions are not one queue per "
                               "horizon, each of at most that many days, oldest first, up to its last bar")


def _arima_order(value: Any) -> tuple[int, int, int] | None:
    """The ARIMA order as stored (a list of three whole numbers, or null), as a tuple."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 3 or any(type(k) is not int for k in value):
        raise StateDecodeError(f"ticker state corrupted: its ARIMA order {value!r} is not three whole "
                               "numbers")
    return (value[0], value[1], value[2])


def _written(value: float) -> float | str:
    """A float as the byte form holds it: itself, or its word where JSON has no number for it."""
    return value if math.isfinite(value) else repr(float(value))  # 'inf', '-inf' or 'nan'


def _read_float(value: Any) -> float:
    """The float :func:`_written` wrote."""
    if type(value) is float or type(value) is int:
        return value
    if type(value) is str and value in _NON_FINITE:
        return _NON_FINITE[value]
    raise StateDecodeError(f"ticker state corrupted: {value!r} where a number belongs")


def _stored(p: Pending) -> tuple[Any, ...]:
    """A pending prediction as the byte form holds it: its fields in order, the floats :func:`_written`."""
    # One sum for the common case; one that overflows (every value finite) takes the long way, to the
    # same result. The levels are the configuration's, finite.
    if math.isfinite(p[2] + p[3] + p[4] + p[5] + sum(p[7]) + sum(p[8])):
        return tuple(p)
    return (p[0], p[1], *map(_written, p[2:6]), p[6], tuple(map(_written, p[7])), tuple(map(_written, p[8])),
            *p[9:])


def _pending(row: list[Any]) -> Pending:
    """A pending prediction from its stored fields (in field order)."""
    if not isinstance(row, list) or len(row) != len(LastPrediction._fields):
        raise StateDecodeError(f"ticker state corrupted: a pending prediction is not a list of "
                               f"{len(LastPrediction._fields)} fields")
    as_of, horizon, log_centre, scale, predicted_close, naive_close, levels, lower, upper, *labels = row
    model, version, warmup, regime = labels
    if not all(type(column) is list for column in (levels, lower, upper)):
        raise StateDecodeError("ticker state corrupted: a pending prediction's levels or bounds are not "
                               "lists")
    levels, lower, upper = (tuple(map(_read_float, column)) for column in (levels, lower, upper))
    log_centre, scale = _read_float(log_centre), _read_float(scale)
    if (type(horizon) is not int or not len(levels) == len(lower) == len(upper)
            or type(model) is not str or type(version) is not str or type(warmup) is not bool
            or not (regime is None or type(regime) is str)):
        raise StateDecodeError("ticker state corrupted: a pending prediction's fields are not of their types")
    if (not levels or not all(0.0 < level < 1.0 for level in levels)
            or not math.isfinite(log_centre) or not 0.0 < scale < math.inf):
        raise StateDecodeError("ticker state corrupted: a pending prediction has no interval levels in "
                               "(0, 1), or a centre or scale that is not finite")
    return (dt.date.fromisoformat(as_of), horizon, log_centre, scale, _read_float(predicted_close),
            _read_float(naive_close), levels, lower, upper, model, version, warmup, regime)


def _from_version_3(values: dict[str, Any]) -> dict[str, Any]:
    """A version-3 state's fields as version 4's: its one pending prediction and its calibration are
    horizon 1's."""
    last = values.pop("last_prediction")
    pending = () if last is None else (_pending([last[name] if name != "horizon" else 1
                                                 for name in LastPrediction._fields]),)
    rows = {name: _read_only(np.array([values[name]], dtype=float))
            for name in ("residual_sum", "residual_weight", "zero_weight", "residuals")}
    offsets = _read_only(values["interval_offsets"].reshape(1, -1))
    return {**values, **rows, "horizons": (1,), "interval_offsets": offsets, "arima_order": None,
            "pending": pending}


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


_FIELDS = tuple(f.name for f in dataclasses.fields(TickerState))
_ARRAYS = frozenset({"log_closes", "arima_params", "arima_state", "arima_cov", "variance_ewmas",
                     "residual_sum", "residual_weight", "zero_weight", "residuals", "interval_offsets",
                     "features"})
_ARRAY_ORDER = tuple(name for name in _FIELDS if name in _ARRAYS)  # the order of the raw arrays
_SCALARS = tuple(name for name in _FIELDS if name not in _ARRAYS and name != "pending")
_arrays_of = operator.attrgetter(*_ARRAY_ORDER)
_FLOAT_SCALARS = ("last_close", "last_volume")  # NaN before a ticker's first bar
_INT_SCALARS = ("bars", "refits", "failed_refits", "since_refit", "feature_rows")
#: The largest count a state may hold: every whole number up to it is a float too.
MAX_COUNT = 2**53
_CALIBRATION_ROWS = ("residual_sum", "residual_weight", "zero_weight", "residuals")  # a row per horizon
#: The words :func:`_written` gives the floats JSON has no number for.
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_F8 = np.dtype("<f8")  # the array's dtype when its buffer is already the bytes to_bytes writes
_V5 = _Layout(_FIELDS, _ARRAYS)
_V4 = _Layout(tuple(name for name in _FIELDS if name != "arima_order"), _ARRAYS)
_V3 = _Layout(("ticker", "last_date", "bars", "refits", "failed_refits", "since_refit", "last_close",
               "last_volume", "log_closes", "arima_params", "arima_state", "arima_cov", "variance_ewmas",
               "residual_sum", "residual_weight", "zero_weight", "residuals", "interval_offsets", "features",
               "feature_rows", "last_prediction"),
              frozenset({"log_closes", "arima_params", "arima_state", "arima_cov", "variance_ewmas",
                         "interval_offsets", "features"}))
