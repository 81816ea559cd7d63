"""The prediction and score records as types: the one source of their fields, encoding and JSON Schema.

:class:`Prediction` and :class:`Score` are what :func:`~models.core.step.step` writes (as the dicts of
their :meth:`~Prediction.to_dict`, field for field and in that order) and what the stream worker
publishes, with ``produced_at`` added. A field per interval level (``lower_80``, ``inside_95``...) is
a tuple in the type, one value per level, in the order of ``level_labels``.

:func:`json_schema` derives the structure of a record (its fields, their JSON types, which are required)
from any of the system's record dataclasses; the hand-written files in ``schemas/``, which add
descriptions and ranges, are checked against it by the tests, and the API's OpenAPI document shows it.

The step builds its dicts directly rather than through these types: a frozen dataclass made and
encoded per prediction alone costs ``step_many`` a sixth to a quarter more time (docs/benchmarks.md).
Tests check that every record it writes is exactly the encoding of its type (:func:`from_dict` then
``to_dict``, same fields, types and order).

Examples
--------
>>> import datetime as dt
>>> p = Prediction(ticker="ACME", as_of=dt.date(2024, 1, 5), target_date=dt.date(2024, 1, 8), horizon=1,
...                predicted_close=10.2, level_labels=("80",), lower=(9.9,), upper=(10.5,), sigma=0.02,
...                vol_regime=None, model="naive", model_version="1", warmup=True)
>>> p.to_dict()  # doctest: +NORMALIZE_WHITESPACE
{'record_type': 'prediction', 'ticker': 'ACME', 'as_of': '2024-01-05', 'target_date': '2024-01-08',
 'horizon': 1, 'predicted_close': 10.2, 'lower_80': 9.9, 'upper_80': 10.5, 'sigma': 0.02, 'vol_regime': None,
 'model': 'naive', 'model_version': '1', 'warmup': True}
>>> from_dict(Prediction, p.to_dict()) == p
True
>>> from_dict(Prediction, {**p.to_dict(), "sigma": "0.02"})
Traceback (most recent call last):
...
ValueError: prediction field sigma: expected float, got str '0.02'
>>> json_schema(Prediction)["required"][:3]
['record_type', 'ticker', 'as_of']
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

#: Suffix of a per-level field: the level in percent (``level_label``: 0.8 -> 80, 0.975 -> 97.5).
LEVEL_PATTERN = "[0-9]+(\\.[0-9]+)?"

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Prediction:
    """A forecast of a ticker's close ``horizon`` trading days ahead with central intervals
    (``schemas/prediction.schema.json``).

    Attributes
    ----------
    ticker, as_of, target_date
        Whose; the date of the last bar used; the ``horizon``-th weekday after it (holidays are not known).
    horizon
        Trading days (bars of the ticker) ahead: the ``horizon``-th next bar scores it.
    predicted_close, sigma
        The forecast, and the volatility model's standard deviation of the log return over the
        ``horizon`` days.
    level_labels, lower, upper
        The interval levels in percent (``"80"``) and each level's bounds: ``lower_80``, ``upper_80``...
    vol_regime
        ``calm``, ``middle`` or ``volatile`` (:mod:`models.core.volatility`); None until known.
    model, model_version, warmup
        Which model made it; whether the model or the intervals were still warming up.
    produced_at
        When the stream worker emitted it (ISO 8601); None from a backtest.
    """

    RECORD_TYPE: ClassVar[str] = "prediction"

    ticker: str
    as_of: dt.date
    target_date: dt.date
    horizon: int
    predicted_close: float
    level_labels: tuple[str, ...] = field(metadata={"labels": True})  # names the per-level fields
    lower: tuple[float, ...] = field(metadata={"per_level": "lower"})
    upper: tuple[float, ...] = field(metadata={"per_level": "upper"})
    sigma: float
    vol_regime: str | None
    model: str
    model_version: str
    warmup: bool
    produced_at: str | None = field(default=None, metadata={"absent_when_none": True})

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values, in the field order the core writes (bounds level by level)."""
        record: dict[str, Any] = {
            "record_type": self.RECORD_TYPE, "ticker": self.ticker, "as_of": self.as_of.isoformat(),
            "target_date": self.target_date.isoformat(), "horizon": self.horizon,
            "predicted_close": self.predicted_close}
        for label, lower, upper in zip(self.level_labels, self.lower, self.upper, strict=True):
            record["lower_" + label] = lower
            record["upper_" + label] = upper
        record.update(sigma=self.sigma, vol_regime=self.vol_regime, model=self.model,
                      model_version=self.model_version, warmup=self.warmup)
        return _with_produced_at(record, self.produced_at)


@dataclass(frozen=True, slots=True)
class Score:
    """A prediction checked against the close it predicted (``schemas/score.schema.json``).

    Attributes
    ----------
    ticker, as_of, target_date
        Whose; the scored prediction's ``as_of``; the date of the bar that scored it.
    horizon
        The scored prediction's horizon: the bar that scored it is the ``horizon``-th after ``as_of``.
    predicted_close, actual_close, error, abs_pct_error
        The prediction, the close, ``actual - predicted`` and ``100 * |error| / actual``.
    naive_close, naive_error
        The naive forecast of the same day (the close of ``as_of``) and its error.
    level_labels, inside, width, winkler
        The scored prediction's levels in percent and, per level, whether the close was inside,
        the interval's width and its Winkler score: ``inside_80``, ``width_80``, ``winkler_80``...
    model, model_version, warmup, vol_regime
        As in the scored prediction.
    produced_at
        When the stream worker emitted it (ISO 8601); None from a backtest.
    """

    RECORD_TYPE: ClassVar[str] = "score"

    ticker: str
    as_of: dt.date
    target_date: dt.date
    horizon: int
    predicted_close: float
    actual_close: float
    error: float
    abs_pct_error: float
    naive_close: float
    naive_error: float
    level_labels: tuple[str, ...] = field(metadata={"labels": True})  # names the per-level fields
    inside: tuple[bool, ...] = field(metadata={"per_level": "inside"})
    width: tuple[float, ...] = field(metadata={"per_level": "width"})
    winkler: tuple[float, ...] = field(metadata={"per_level": "winkler"})
    model: str
    model_version: str
    warmup: bool
    vol_regime: str | None
    produced_at: str | None = field(default=None, metadata={"absent_when_none": True})

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values, in the field order the core writes (per-level fields by kind)."""
        record: dict[str, Any] = {
            "record_type": self.RECORD_TYPE, "ticker": self.ticker, "as_of": self.as_of.isoformat(),
            "target_date": self.target_date.isoformat(), "horizon": self.horizon,
            "predicted_close": self.predicted_close, "actual_close": self.actual_close, "error": self.error,
            "abs_pct_error": self.abs_pct_error,
            "naive_close": self.naive_close, "naive_error": self.naive_error}
        for prefix, values in (("inside_", self.inside), ("width_", self.width), ("winkler_", self.winkler)):
            record.update(zip([prefix + label for label in self.level_labels], values, strict=True))
        record.update(model=self.model, model_version=self.model_version, warmup=self.warmup,
                      vol_regime=self.vol_regime)
        return _with_produced_at(record, self.produced_at)


def _with_produced_at(record: dict[str, Any], produced_at: str | None) -> dict[str, Any]:
    if produced_at is not None:
        record["produced_at"] = produced_at
    return record


def from_dict(cls: type[R], record: dict[str, Any]) -> R:
    """The typed record of a decoded JSON ``record`` (a :class:`Prediction` or :class:`Score`).

    Raises
    ------
    ValueError
        A field is missing, unknown, or of another type than the class declares (an int is not a float).
    """
    kind = getattr(cls, "RECORD_TYPE", cls.__name__)
    if record.get("record_type") != kind:
        raise ValueError(f"{kind} record has record_type {record.get('record_type')!r}")
    hints = typing.get_type_hints(cls)
    per_level = {f.name: f.metadata["per_level"] for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                 if "per_level" in f.metadata}
    first_prefix = next(iter(per_level.values())) + "_"
    labels = tuple(key[len(first_prefix):] for key in record if key.startswith(first_prefix))
    values: dict[str, Any] = {}
    used = {"record_type"}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.metadata.get("labels"):
            values[f.name] = labels
        elif f.name in per_level:
            keys = [f"{per_level[f.name]}_{label}" for label in labels]
            values[f.name] = tuple(_typed(kind, key, record.get(key, _MISSING), hints[f.name].__args__[0])
                                   for key in keys)
            used.update(keys)
        elif f.name in record or f.default is not None:
            values[f.name] = _typed(kind, f.name, record.get(f.name, _MISSING), hints[f.name])
            used.add(f.name)
    unknown = record.keys() - used
    if unknown:
        raise ValueError(f"{kind} record has unknown fields {', '.join(sorted(unknown))}")
    return cls(**values)


_MISSING = object()


def _typed(kind: str, name: str, value: Any, hint: Any) -> Any:
    """``value`` as the field's type (a date from its ISO text), or ValueError when it is not one."""
    if value is _MISSING:
        raise ValueError(f"{kind} record lacks {name}")
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind_ in allowed:
        if kind_ is dt.date and isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                break
        if type(value) is kind_:
            return value
    wanted = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise ValueError(f"{kind} field {name}: expected {wanted}, got {type(value).__name__} {value!r}")



_JSON_TYPES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    float: {"type": "number"},
    int: {"type": "integer"},
    bool: {"type": "boolean"},
    dt.date: {"type": "string", "format": "date"},
}


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema structure of the records of dataclass ``cls``: each field's JSON type, which
    fields are required (those that do not default to None), and a pattern per per-level field.

    >>> from models.core.bar import Bar
    >>> schema = json_schema(Bar)
    >>> schema["required"], schema["properties"]["adj_close"]
    (['ticker', 'date', 'open', 'high', 'low', 'close', 'volume'], {'type': ['number', 'null']})
    """
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    patterns: dict[str, Any] = {}
    required: list[str] = []
    kind = getattr(cls, "RECORD_TYPE", None)
    if kind is not None:
        properties["record_type"] = {"const": kind}
        required.append("record_type")
    for f in dataclasses.fields(cls):
        if f.metadata.get("labels"):
            continue
        if "per_level" in f.metadata:
            patterns[f"^{f.metadata['per_level']}_{LEVEL_PATTERN}$"] = _json_type(hints[f.name].__args__[0])
            continue
        json_type = _json_type(hints[f.name])
        if f.metadata.get("absent_when_none"):
            json_type["type"] = json_type["type"][0]
        properties[f.name] = json_type
        if f.default is not None:
            required.append(f.name)
    schema: dict[str, Any] = {"title": cls.__name__, "type": "object", "required": required,
                              "additionalProperties": False, "properties": properties}
    if patterns:
        schema["patternProperties"] = patterns
    return schema


def _json_type(hint: Any) -> dict[str, Any]:
    if isinstance(hint, types.UnionType):
        parts = [_JSON_TYPES[arg] for arg in typing.get_args(hint) if arg is not type(None)]
        if len(parts) != 1:
            raise TypeError(f"no JSON type for {hint}")
        return {**parts[0], "type": [parts[0]["type"], "null"]}
    return dict(_JSON_TYPES[hint])

