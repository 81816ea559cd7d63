"""Replaying into the real broker: keyed, ordered, schema-valid, every row accounted for."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import jsonschema
import pytest

from forecaster.cli import main
from forecaster.kafka.broker import free_port
from forecaster.kafka.topics import TopicSpec, create_topics
from forecaster.settings import Settings
from models.core.bar import REASONS
from models.core.deadletter import DETAIL_LIMIT, RAW_LIMIT, DeadLetter
from producers.pacing import Pacing
from producers.publisher import BrokerUnreachable
from producers.readers import read_csv_bars
from producers.replay import ReplayError, replay
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.kafka

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
BAD_ROWS = ("2013-02-11,15.07,15.0,14.63,15.10,8407500,AAL\n"   # high below max(open, close)
            "2013-02-12,,15.0,14.63,15.10,8407500,AAL\n"          # missing open
            "2013-02-08,15.07,15.12,14.63,14.75,8407500,AAL\n")   # duplicate of the first row


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def _small_files(data_dir: Path, tmp_path: Path) -> list[Path]:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,open,high,low,close,volume,Name\n2013-02-08,15.07,15.12,14.63,14.75,8407500,AAL\n"
                   + BAD_ROWS)
    return [data_dir / "vgi", data_dir / "601988.SH.csv", bad]


@pytest.mark.parametrize("processes", [1, 3], ids=["one producer", "three producer processes"])
def test_replay_publishes_keyed_ordered_schema_valid_bars(data_dir: Path, tmp_path: Path,
                                                          kafka_settings: Settings, processes: int) -> None:
    result = read_csv_bars(_small_files(data_dir, tmp_path))
    summary = replay(result, kafka_settings, progress=False, processes=processes)

    assert summary.accounted
    assert summary.rows_read == 4396 + 854 + 3681 + 4
    assert summary.bars_sent == summary.rows_read - 3
    assert summary.dead_letters == {"duplicate": 1, "high_below_open_close": 1, "missing_field": 1}

    bars = read_topic(kafka_settings, kafka_settings.topic_bars)
    assert len(bars) == summary.bars_sent
    bar_schema = jsonschema.Draft202012Validator(_schema("bar"))  # checks the schema once, not per bar
    partitions: dict[str, set[int]] = defaultdict(set)
    dates: dict[str, list[str]] = defaultdict(list)
    for partition, _offset, key, value in sorted(bars, key=lambda r: (r[0], r[1])):
        bar_schema.validate(value)
        assert key == value["ticker"]
        partitions[key].add(partition)
        dates[key].append(value["date"])
    assert set(partitions) == {"VGI", "VTC", "ABC", "TEL", "VGI2", "601988.SH", "AAL"}
    assert all(len(p) == 1 for p in partitions.values())  # one ticker, one partition
    assert all(d == sorted(d) and len(d) == len(set(d)) for d in dates.values())  # in date order
    assert len({p for ps in partitions.values() for p in ps}) > 1  # and tickers spread over partitions

    letters = read_topic(kafka_settings, kafka_settings.topic_dlq)
    letter_schema = jsonschema.Draft202012Validator(_schema("dead_letter"))
    for _partition, _offset, key, value in letters:
        letter_schema.validate(value)
        assert key == "AAL" and value["source"].startswith("bad.csv:")
    assert sorted(v["raw"] + "\n" for *_, v in letters) == sorted(BAD_ROWS.splitlines(keepends=True))


def test_bokeh_and_sp500_layouts_reach_the_topic(data_dir: Path, sp500_slice: tuple[Path, list[str]],
                                                 kafka_settings: Settings) -> None:
    path, lines = sp500_slice
    result = read_csv_bars([data_dir / "bokeh-stocks.csv.gz", path], start=dt.date(2013, 1, 1))
    summary = replay(result, kafka_settings, progress=False)
    assert summary.accounted and summary.filtered > 0
    assert summary.dead_letters_sent == len(result.dead_letters) > 0  # LNT's and BHF's bad rows
    letters = read_topic(kafka_settings, kafka_settings.topic_dlq)
    assert sorted(key for _p, _o, key, _v in letters) == sorted(d.ticker for d in result.dead_letters)
    records = read_topic(kafka_settings, kafka_settings.topic_bars)
    assert len(records) == summary.bars_sent == len(result.bars)
    assert {key for _p, _o, key, _v in records} == {"AAPL", "IBM", "MSFT", "GOOG", "FB", "LNT", "BHF", "AAL",
                                                    "AOS"}
    assert summary.rows_read == 12_154 + len(lines) - 1


def test_bars_go_out_in_event_time_order_across_tickers(data_dir: Path, kafka_settings: Settings) -> None:
    # On a one-partition topic the offsets are the sending order.
    topic = kafka_settings.topic_bars + "-single"
    create_topics(kafka_settings, [TopicSpec(topic, 1, 1, {})])
    result = read_csv_bars([data_dir / "vgi" / "Vienthong.csv"])
    replay(result, kafka_settings, topic=topic, progress=False)
    sent = [(v["date"], v["ticker"]) for *_, v in sorted(read_topic(kafka_settings, topic))]
    assert len(sent) == 4396 and sent == sorted(sent)


def test_speed_pacing_sends_each_day_on_schedule(data_dir: Path, kafka_settings: Settings) -> None:
    result = read_csv_bars([data_dir / "vgi" / "Vienthong.csv"], tickers=["VTC", "ABC"],
                           end=dt.date(2017, 1, 31))
    days = {b.date for b in result.bars}
    assert len(days) > 10
    now, sleeps = [0.0], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    summary = replay(result, kafka_settings, pacing=Pacing(speed=4), progress=False,
                     clock=lambda: now[0], sleep=sleep)
    # Nothing but the sleeps moves this clock: one sleep per new day, 1/4 s apart.
    assert sleeps == [0.25] * (len(days) - 1)
    assert summary.seconds == pytest.approx((len(days) - 1) / 4)
    assert len(read_topic(kafka_settings, kafka_settings.topic_bars)) == len(result.bars) == summary.bars_sent


def test_unreachable_broker_fails_fast_and_says_nothing_was_sent(data_dir: Path) -> None:
    result = read_csv_bars([data_dir / "vgi" / "vgi2.csv"])
    settings = Settings(bootstrap=f"127.0.0.1:{free_port()}")
    with pytest.raises(BrokerUnreachable, match=r"within 1 s .*nothing was sent"):
        replay(result, settings, connect_timeout_s=1.0, progress=False)


def test_records_the_broker_refuses_end_in_an_error_that_says_what_was_delivered(
        data_dir: Path, kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_bars + "-tiny"
    create_topics(kafka_settings, [TopicSpec(topic, 1, 1, {"max.message.bytes": "100"})])  # < any bar
    result = read_csv_bars([data_dir / "vgi" / "vgi2.csv"])
    with pytest.raises(ReplayError, match="delivered 0 bars and 0 dead letters of 854 rows read") as caught:
        replay(result, kafka_settings, topic=topic, progress=False)
    assert caught.value.summary.bars_sent == 0 and not caught.value.summary.accounted


def test_records_refused_in_producer_processes_end_in_an_error_that_says_what_was_delivered(
        data_dir: Path, kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_bars + "-tiny"
    create_topics(kafka_settings, [TopicSpec(topic, 2, 1, {"max.message.bytes": "100"})])  # < any bar
    result = read_csv_bars([data_dir / "vgi"])
    with pytest.raises(ReplayError, match=r"first delivery error: .*MessageSizeTooLarge") as caught:
        replay(result, kafka_settings, topic=topic, progress=False, processes=2)
    assert "delivered 0 bars" in str(caught.value) and not caught.value.summary.accounted


def test_cli_replays_and_prints_the_summary(data_dir: Path, kafka_settings: Settings,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FORECASTER_TOPIC_DLQ", kafka_settings.topic_dlq)
    code = main(["replay", str(data_dir / "vgi" / "vgi2.csv"), "--ticker", "VGI", "--start", "2021-01-01",
                 "--bootstrap", kafka_settings.bootstrap, "--topic", kafka_settings.topic_bars,
                 "--rate", "100000", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    records = read_topic(kafka_settings, kafka_settings.topic_bars)
    assert {key for _p, _o, key, _v in records} == {"VGI"}
    sent_line = next(line for line in out.splitlines() if line.startswith("bars sent"))
    assert int(sent_line.split()[2].replace(",", "")) == len(records) > 0
    assert "rows read" in out and "filtered" in out and "bars/s" in out


def test_cli_exits_non_zero_with_one_line_when_the_broker_is_down(data_dir: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(data_dir / "vgi" / "vgi2.csv"), "--bootstrap", f"127.0.0.1:{free_port()}",
                 "--connect-timeout", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "forecaster replay: error: cannot reach Kafka" in err and "nothing was sent" in err


def test_dead_letter_schema_lists_exactly_the_bar_reasons() -> None:
    assert _schema("dead_letter")["properties"]["reason"]["enum"] == list(REASONS)


def test_a_dead_letter_keeps_the_first_raw_limit_characters_and_says_so() -> None:
    whole = DeadLetter(reason="not_json", detail="not JSON", raw="x" * RAW_LIMIT, source="bars/0/1")
    assert whole.raw == "x" * RAW_LIMIT and whole.detail == "not JSON"
    cut = DeadLetter(reason="not_json", detail="not JSON", raw="y" * (RAW_LIMIT + 1), source="bars/0/2")
    assert cut.raw == "y" * RAW_LIMIT
    assert cut.detail == f"not JSON (raw cut to its first {RAW_LIMIT:,} of {RAW_LIMIT + 1:,} characters)"
    jsonschema.validate(cut.to_dict(), _schema("dead_letter"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**cut.to_dict(), "raw": "y" * (RAW_LIMIT + 1)}, _schema("dead_letter"))


def test_a_dead_letter_keeps_the_first_detail_limit_characters_of_its_detail() -> None:
    both = DeadLetter(reason="not_json", detail="d" * 5000, raw="r" * (RAW_LIMIT + 1), source="bars/0/3")
    assert both.detail == (f"{'d' * DETAIL_LIMIT}… (cut from 5,000 characters) (raw cut to its first "
                           f"{RAW_LIMIT:,} of {RAW_LIMIT + 1:,} characters)")
    jsonschema.validate(both.to_dict(), _schema("dead_letter"))
