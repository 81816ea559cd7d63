"""What consumers of the predictions topic see: ``forecaster tail`` and the README's snippet.

The topic is filled with the backtest's records (the worker's, less ``produced_at``: the stream ==
backtest test), keyed by ticker as the worker sends them, on the real broker.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from forecaster.commands import tail
from forecaster.kafka.client import kafka_python_options
from forecaster.settings import Settings
from models.backtest import run_backtest
from models.core.config import CoreConfig
from producers.readers import read_csv_bars

pytestmark = [pytest.mark.kafka]

README = Path(__file__).resolve().parents[2] / "README.md"


def send_records(data_dir: Path, settings: Settings, topic: str | None = None) -> list[dict[str, Any]]:
    """Two tickers' records of 2011's first quarter at ``settings.horizons``, sent to ``topic``
    (default: the predictions topic) in the order the worker sends them."""
    read = read_csv_bars([data_dir / "bokeh-stocks.csv.gz"], tickers=("AAPL", "IBM"),
                         start=dt.date(2011, 1, 1), end=dt.date(2011, 3, 31))
    backtest = run_backtest(read.bars, CoreConfig.from_settings(settings.replace(model="naive")))
    # A bar's scores (of the predictions it settles) go out before the bar's own predictions, each
    # kind in ascending horizon (the backtest's order, which the stable sort keeps).
    order = {"score": 0, "prediction": 1}
    out = sorted([*backtest.scores, *backtest.predictions],
                 key=lambda r: (r["target_date"] if r["record_type"] == "score" else r["as_of"],
                                r["ticker"], order[r["record_type"]]))
    producer = KafkaProducer(**kafka_python_options(settings), acks="all")
    for record in out:
        producer.send(topic or settings.topic_predictions, key=record["ticker"].encode(),
                      value=orjson.dumps(record))
    producer.flush()
    producer.close()
    return out


@pytest.fixture
def records(data_dir: Path, kafka_settings: Settings) -> list[dict[str, Any]]:
    """The records of the default horizon (one day)."""
    return send_records(data_dir, kafka_settings)


def run_tail(settings: Settings, **options: Any) -> list[str]:
    # The idle timeout only bounds a failing run; a passing one stops at max_records.
    defaults = {"bootstrap": None, "from_beginning": True, "ticker": None, "horizon": None, "shadow": False,
                "format": "json",
                "max_records": None, "idle_timeout": 30.0, "connect_timeout": 10.0}
    args = argparse.Namespace(**{**defaults, **options})
    out = io.StringIO()
    assert tail.run(args, settings, out=out) == 0
    return out.getvalue().splitlines()


def test_tail_prints_to_the_stdout_of_the_call(kafka_settings: Settings, records: list[dict[str, Any]],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # sys.stdout replaced after the import (as pytest, or a caller redirecting it, does)
    args = argparse.Namespace(bootstrap=None, from_beginning=True, ticker=None, horizon=None, shadow=False,
                              format="json", max_records=1, idle_timeout=30.0, connect_timeout=10.0)
    assert tail.run(args, kafka_settings) == 0
    assert orjson.loads(capsys.readouterr().out) in records  # the first of some partition


def test_tail_shows_one_tickers_records_in_order_as_json(kafka_settings: Settings,
                                                         records: list[dict[str, Any]]) -> None:
    ibm = [r for r in records if r["ticker"] == "IBM"]
    lines = run_tail(kafka_settings, ticker=["IBM"], max_records=len(ibm))
    assert [orjson.loads(line) for line in lines] == ibm
    assert {r["record_type"] for r in ibm} == {"prediction", "score"}


def test_tail_shows_a_table_with_a_header(kafka_settings: Settings, records: list[dict[str, Any]]) -> None:
    header, *rows = run_tail(kafka_settings, format="table", max_records=len(records))
    assert header.split() == [name for name, _ in tail.TABLE_COLUMNS]
    # One row per record (two tickers' partitions interleave as they are read).
    cells = {tuple(row.split()[:3]): row.split()[3:] for row in rows}
    assert len(rows) == len(cells) == len(records)
    for record in records:
        key = (record["record_type"], record["ticker"], record["as_of"])
        target, horizon, model, predicted = cells[key][:4]
        assert (target, horizon, model, predicted) == (record["target_date"], str(record["horizon"]),
                                                       record["model"], f"{record['predicted_close']:.4f}")


def test_tail_keeps_the_horizons_asked_for(kafka_settings: Settings, data_dir: Path) -> None:
    records = send_records(data_dir, kafka_settings.replace(horizons=(1, 5, 20)))
    wanted = [r for r in records if r["ticker"] == "IBM" and r["horizon"] in (5, 20)]
    assert {r["record_type"] for r in wanted} == {"prediction", "score"}
    # Stopping at as many records as wanted: one of another horizon would take a wanted one's place.
    lines = run_tail(kafka_settings, ticker=["IBM"], horizon=[5, 20], max_records=len(wanted))
    assert [orjson.loads(line) for line in lines] == wanted
    _, *rows = run_tail(kafka_settings, format="table", horizon=[20], max_records=3)
    assert [row.split()[4] for row in rows] == ["20"] * 3


def test_tail_shadow_shows_the_challengers_records(kafka_settings: Settings, data_dir: Path,
                                                   records: list[dict[str, Any]]) -> None:
    # The challengers' topic holds other records than the predictions topic (two horizons, not one):
    # reading the wrong topic shows other records, or too few.
    shadow = send_records(data_dir, kafka_settings.replace(horizons=(1, 5)), kafka_settings.topic_shadow)
    ibm = [r for r in shadow if r["ticker"] == "IBM"]
    assert len(ibm) > len([r for r in records if r["ticker"] == "IBM"])
    lines = run_tail(kafka_settings, shadow=True, ticker=["IBM"], max_records=len(ibm))
    assert [orjson.loads(line) for line in lines] == ibm


class _Done(Exception):
    pass


def test_the_readme_consumer_snippet_reads_every_record(kafka_settings: Settings,
                                                        records: list[dict[str, Any]]) -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    # The snippet as a user runs it, against this test's topic and broker.
    snippet = snippet.replace('"predictions"', repr(kafka_settings.topic_predictions))
    snippet = snippet.replace('"127.0.0.1:9092"', repr(kafka_settings.bootstrap))
    snippet = snippet.replace('"my-app"', repr(f"my-app-{kafka_settings.app_id}"))
    printed: list[tuple[Any, ...]] = []

    def collect(*values: Any) -> None:  # the snippet's print; it loops for ever, so stop it here
        printed.append(values)
        if len(printed) == len(records):
            raise _Done

    namespace: dict[str, Any] = {"print": collect}
    try:
        with pytest.raises(_Done):
            exec(snippet, namespace)
    finally:
        if "consumer" in namespace:
            namespace["consumer"].close()
    expected = [(r["ticker"], r["target_date"], r["predicted_close"], (r["lower_95"], r["upper_95"]),
                 r["model"], r["model_version"]) if r["record_type"] == "prediction" else
                (r["ticker"], r["target_date"], "error", r["error"], "naive error", r["naive_error"],
                 "inside 95 %", r["inside_95"]) for r in records]
    key = repr
    assert sorted(printed, key=key) == sorted(expected, key=key)
