"""Records like the stream worker's on the predictions topic, for the reader and the page to show."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from forecaster.kafka.client import kafka_python_options
from forecaster.settings import Settings
from models.backtest import run_backtest
from models.core.config import CoreConfig
from producers.readers import read_csv_bars


def streamed_records(data_dir: Path, horizons: tuple[int, ...] = (1,)) -> list[dict[str, Any]]:
    """The records the worker would write for the four tickers of ``vgi/Vienthong.csv`` (naive model)
    at ``horizons``."""
    bars = read_csv_bars([data_dir / "vgi" / "Vienthong.csv"]).bars
    backtest = run_backtest(bars, CoreConfig(model="naive", horizons=horizons))
    produced_at = {"produced_at": "2026-01-02T03:04:05.000+00:00"}
    return [{**record, **produced_at} for record in [*backtest.predictions, *backtest.scores]]


def seed_predictions(settings: Settings, records: list[dict[str, Any]], extra: Sequence[bytes] = ()) -> None:
    """Write ``records`` (keyed by ticker) and raw ``extra`` messages to the predictions topic."""
    producer = KafkaProducer(**kafka_python_options(settings))
    try:
        for record in records:
            producer.send(settings.topic_predictions, key=record["ticker"].encode(),
                          value=orjson.dumps(record))
        for value in extra:
            producer.send(settings.topic_predictions, key=b"?", value=value)
        producer.flush()
    finally:
        producer.close()
