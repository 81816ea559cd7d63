"""The JSON bodies of the API, as pydantic models: what the OpenAPI docs show and the app returns.

Prediction, score and dead-letter records stay plain objects, as the worker and the core write them
(two records per forecast bar: validating each into a class would cost more than the forecast), but
the OpenAPI document shows each with the JSON Schema of its typed class
(:func:`models.core.records.json_schema`), the one source of their fields. Their per-level fields
follow ``FORECASTER_INTERVAL_LEVELS`` (``lower_80``, ``upper_95``, ...).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from models.core.deadletter import DeadLetter
from models.core.records import Prediction, Score, json_schema

Record = dict[str, Any]
PredictionRecord = Annotated[Record, WithJsonSchema(json_schema(Prediction))]
ScoreRecord = Annotated[Record, WithJsonSchema(json_schema(Score))]
DeadLetterRecord = Annotated[Record, WithJsonSchema(json_schema(DeadLetter))]


class ForecastBars(BaseModel):
    """``POST /forecast`` with ``Content-Type: application/json``: ``{"bars": [...]}`` and no other
    field (the body is read a bar at a time: :func:`api.inputs.read_json_body`)."""

    model_config = ConfigDict(extra="forbid")

    bars: list[Any] = Field(
        min_length=1,
        description="bar objects of plain values (no nested arrays or objects), each at most 64 KiB of "
        "JSON: ticker, date (YYYY-MM-DD), open, high, low, close, volume, adj_close?; a bar that fails "
        "validation comes back as a dead letter with its reason",
        examples=[[{"ticker": "ACME", "date": "2024-01-05", "open": 10.0, "high": 10.4, "low": 9.8,
                    "close": 10.2, "volume": 1000}]],
    )


class ModelUsed(BaseModel):
    """The model a forecast ran with and what the request asked for."""

    name: str
    version: str
    requested: str


class Summary(BaseModel):
    """The model's metrics and naive's (``naive_`` prefix) on the same scored, non-warm-up days."""

    pooled: dict[str, float | None] = Field(
        description="n, mae, rmse (pooled in the prices' currency: the highest-priced tickers weigh most), "
        "mape, r2, relative_mae (mae / naive_mae), directional_accuracy, naive_mae, ..., coverage_95, "
        "mean_width_95, winkler_95 over every ticker (null where undefined)")
    per_ticker: dict[str, dict[str, float | None]]
    panel: dict[str, float | None] = Field(
        description="scale-free over tickers: tickers, tickers_beating_naive (relative_mae below 1) and "
        "relative_mae, the geometric mean of the per-ticker relative_mae")


class HorizonMetrics(Summary):
    """One horizon's metrics, on the scores of its predictions."""

    horizon: int


class Metrics(Summary):
    """The shortest horizon's metrics (the next day's by default), and each horizon's."""

    by_horizon: list[HorizonMetrics] = Field(description="every horizon's metrics, ascending horizon")


class ForecastOut(BaseModel):
    """The core's walk-forward predictions over the uploaded history, scored against naive."""

    model: ModelUsed
    rows_read: int = Field(description="rows in the input; rows_read == bars + dead_letters_total + filtered")
    filtered: int = Field(description="rows of tickers that ?tickers= did not select")
    bars: int
    tickers: list[str]
    horizons: list[int] = Field(description="the horizons forecast, in trading days, ascending")
    dead_letters: list[DeadLetterRecord] = Field(
        description="the first FORECASTER_API_MAX_DEAD_LETTERS rejected rows, with reason and source; "
        "each text cut to 500 characters, control characters escaped")
    dead_letters_total: int = Field(description="rejected rows, listed or not")
    dead_letters_by_reason: dict[str, int] = Field(
        description="rejected rows per reason, most frequent first")
    predictions: list[PredictionRecord] = Field(
        description="one prediction per bar and horizon (ascending within a bar): the close `horizon` bars "
        "ahead, dated the `horizon`-th next weekday")
    scores: list[ScoreRecord] = Field(description="each prediction whose target bar is in the input, scored")
    metrics: Metrics


class HorizonLatest(BaseModel):
    """A ticker's latest prediction and latest score of one horizon."""

    horizon: int
    prediction: PredictionRecord | None
    score: ScoreRecord | None


class LatestOut(HorizonLatest):
    """A ticker's latest prediction and latest score read from the predictions topic: the shortest
    horizon's (``horizon``, ``prediction``, ``score``), and each horizon's."""

    ticker: str
    horizons: list[HorizonLatest] = Field(
        description="each horizon the ticker's latest bars were forecast at, ascending: a horizon no longer "
        "forecast drops out one bar after the worker stops forecasting it")


class LatestListOut(BaseModel):
    """Every ticker's latest records, and how the reading of the topic goes."""

    predictions: list[LatestOut]
    reader: Record


class HealthOut(BaseModel):
    """``ok`` when the broker answers and the champion, if any, loaded; else ``degraded`` (still serving)."""

    status: str
    broker: Record
    model: Record


class ModelsOut(BaseModel):
    """The registered model, its champion version with its test metrics, and what serves without one."""

    name: str
    registry: str
    champion: Record | None
    serving: str
