"""Bad input, fuzzed: every CSV row and every ``bars`` message ends as a bar or a dead letter with a reason.

Property-based tests (hypothesis, derandomized so every run tries the same examples) over the CSV
reader (:func:`producers.readers.read_csv_bars`) and the worker's decoder and batch logic
(:mod:`stream_app.processor`): arbitrary bytes, wrong encodings, corrupt gzip, missing columns,
huge numbers, NaN and infinities, far dates, mixed tickers, JSON of any shape. A file is either
refused whole with a :class:`LayoutError` that names it, or read with every row accounted for
(``rows_read == bars + dead letters + filtered``, and ``rows_read`` is the number of rows written);
nothing else escapes. Real layouts are the header and first row of each file of the sample data.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import gzip
import io
from collections import Counter
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from models.core.bar import MAX_DATE, MIN_DATE, REASONS, Bar, BarError
from models.core.config import CoreConfig
from models.core.state import TickerState
from producers.layouts import REQUIRED, UNNAMED_INDEX, detect_layout, normalise
from producers.readers import LayoutError, ReadResult, read_csv_bars
from stream_app.processor import BatchProcessor, InMessage, decode_bar

pytestmark = pytest.mark.faults

# Deterministic, no example database. Fixtures are module- or session-scoped: one folder serves every
# example of a test (hypothesis calls the test body many times per fixture).
FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SMALL = settings(FUZZ, max_examples=80)

REAL_FILES = (
    "bokeh-stocks.csv.gz", "sp500-5yr-sample.csv.gz", "601988.SH.csv", "vgi/vgi2.csv", "vgi/Vienthong.csv",
)
SPECIAL_NUMBERS = ("nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "9" * 400)
#: Cell texts a broken export produces, beside arbitrary text.
NUMBERS = st.one_of(
    st.floats().map(repr),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from((*SPECIAL_NUMBERS, "0", "-0.0", "1e-320", "1,5", "0x1A", " 12 ", "", "-")),
)
ANY_DAY = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))
DATES = st.one_of(
    st.tuples(ANY_DAY, st.integers(0, 3)).map(lambda pair: _spell(*pair)),
    st.sampled_from(("0000-00-00", "2013-02-30", "13/45/2013", "99999999", "2013-02-08T99", "")),
)
TICKERS = st.one_of(st.sampled_from(("AAPL", "AAL", "601988.SH", "VGI", " MSFT ", "x" * 33, "")),
                    st.text(max_size=8))
CELLS = st.one_of(NUMBERS, DATES, TICKERS, st.text(max_size=12))


def _spell(day: dt.date, style: int) -> str:
    """``day`` in one of the spellings the reader knows without a file's other rows: ISO, US
    ``M/D/YYYY``, ``YYYYMMDD`` and ``D.M.YYYY`` (day-first ``D/M/YYYY`` needs a day above 12 somewhere)."""
    return (day.isoformat(), f"{day.month}/{day.day}/{day.year:04d}",
            f"{day.year:04d}{day.month:02d}{day.day:02d}",
            f"{day.day:02d}.{day.month:02d}.{day.year:04d}")[style]


def _row_text(cells: list[str]) -> str:
    # The csv module's own line end, "\r\n": a cell holding either character gets quoted.
    out = io.StringIO()
    csv.writer(out).writerow(cells)
    return out.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def _outcome(path: Path, **selection: Any) -> ReadResult | LayoutError:
    """Read one file; the result with every row accounted for, or the error that names the file."""
    try:
        result = read_csv_bars([path], **selection)
    except LayoutError as error:
        assert str(error).startswith(path.name + ":"), error
        return error
    assert result.rows_read == len(result.bars) + len(result.dead_letters) + result.filtered
    assert all(letter.reason in REASONS and letter.detail for letter in result.dead_letters)
    return result


#: (file name, header, first data row) of a real file.
Layout = tuple[str, list[str], list[str]]
SELECTION_DAYS = st.dates(min_value=dt.date(1995, 1, 1), max_value=dt.date(2025, 1, 1))
#: read_csv_bars' selection: some tickers, a first and a last day, or none of them.
SELECTIONS = st.fixed_dictionaries(
    {}, optional={"tickers": st.lists(TICKERS, max_size=3), "start": SELECTION_DAYS, "end": SELECTION_DAYS},
).filter(lambda s: s.get("start", dt.date.min) <= s.get("end", dt.date.max))


@pytest.fixture(scope="session")
def layouts(data_dir: Path) -> list[Layout]:
    """The layout of every real file."""
    found = []
    for name in REAL_FILES:
        opened = gzip.open if name.endswith(".gz") else open
        with opened(data_dir / name, "rt", encoding="utf-8", newline="") as handle:
            header, row = next(csv.reader(handle)), next(csv.reader(handle))
        found.append((Path(name).name.removesuffix(".gz"), header, row))
    return found


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# -- CSV files ---------------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=400), name=st.sampled_from(("aapl.csv", "aapl.csv.gz")),
       gzip_magic=st.booleans())
@example(data=b"Date,Open,High,Low,Close,Volume\n2013-02-08,1,2,1,2,3\n", name="aapl.csv", gzip_magic=True)
def test_arbitrary_bytes_are_read_or_refused_by_name(folder: Path, data: bytes, name: str,
                                                     gzip_magic: bool) -> None:
    # gzip_magic: bytes that claim to be gzip (its magic number) but are not, or are cut short.
    path = folder / name
    if gzip_magic:
        path.write_bytes(b"\x1f\x8b" + gzip.compress(data, mtime=0)[2:len(data) // 2])
    else:
        _write(path, data)
    _outcome(path)


@FUZZ
@given(data=st.data(), n_rows=st.integers(1, 6), gz=st.booleans(), selection=SELECTIONS)
def test_real_layouts_with_junk_cells_account_for_every_row(
        folder: Path, layouts: list[Layout], data: st.DataObject, n_rows: int, gz: bool,
        selection: dict[str, Any]) -> None:
    name, header, real = data.draw(st.sampled_from(layouts), label="layout")
    rows = []
    for _ in range(n_rows):
        row = list(real)
        for column, junk in data.draw(st.lists(st.tuples(st.integers(0, len(row) - 1), CELLS), max_size=4)):
            row[column] = junk
        rows.append(row)
    path = _write(folder / (name + (".gz" if gz else "")),
                  (_row_text(header) + "".join(map(_row_text, rows))).encode())
    result = _outcome(path, **selection)
    assert isinstance(result, ReadResult)
    assert result.rows_read == n_rows  # no row silently dropped, none invented
    wanted = {t.strip() for t in selection.get("tickers", [b.ticker for b in result.bars])}
    first, last = selection.get("start", MIN_DATE), selection.get("end", MAX_DATE)
    assert all(b.ticker in wanted and first <= b.date <= last for b in result.bars)
    # A dead letter carries its row exactly as written, in file order (a quoted cell may span lines).
    rejected = [next(csv.reader(io.StringIO(letter.raw, newline=""))) for letter in result.dead_letters]
    remaining = iter(rows)
    assert all(any(row == written for written in remaining) for row in rejected)


@FUZZ
@given(data=st.data(), value=st.sampled_from(SPECIAL_NUMBERS),
       field=st.sampled_from(("open", "high", "low", "close", "volume", "adj_close")))
def test_nan_inf_and_overflowing_numbers_are_not_finite(
        folder: Path, layouts: list[Layout], data: st.DataObject, value: str,
        field: str) -> None:
    name, header, row = data.draw(st.sampled_from(layouts), label="layout")
    layout = detect_layout(header, file_name=name)
    column = getattr(layout, field)
    if column is None:  # a layout without adj_close
        column = layout.close
    row = list(row)
    row[column] = value
    result = _outcome(_write(folder / name, (_row_text(header) + _row_text(row)).encode()))
    assert isinstance(result, ReadResult) and not result.bars
    assert [letter.reason for letter in result.dead_letters] == ["not_finite"]


@FUZZ
@given(data=st.data(), day=ANY_DAY, style=st.integers(0, 3))
def test_dates_far_in_the_past_or_future_are_bad_dates(
        folder: Path, layouts: list[Layout], data: st.DataObject, day: dt.date,
        style: int) -> None:
    name, header, row = data.draw(st.sampled_from(layouts), label="layout")
    row = list(row)
    row[detect_layout(header, file_name=name).date] = _spell(day, style)
    result = _outcome(_write(folder / name, (_row_text(header) + _row_text(row)).encode()))
    assert isinstance(result, ReadResult)
    if MIN_DATE <= day <= MAX_DATE:
        assert [bar.date for bar in result.bars] == [day]
    else:
        assert [letter.reason for letter in result.dead_letters] == ["bad_date"]


TIME_PARTS = (" 00:00:00", "T16:00:00", "T16:00:00Z", " 09:30:00.000+05:30")
NOT_TIME_PARTS = ("1", "0", "junk", "T99", "-01", "x00:00", " 25:00")


@FUZZ
@given(day=st.dates(min_value=MIN_DATE, max_value=MAX_DATE),
       after=st.sampled_from(TIME_PARTS + NOT_TIME_PARTS))
@example(day=dt.date(2013, 2, 8), after="1")  # "2013-02-081" was read as 2013-02-08
def test_an_iso_date_with_more_after_it_needs_a_valid_time(folder: Path, day: dt.date, after: str) -> None:
    row = {"ticker": "AAPL", "date": day.isoformat() + after, "open": "1", "high": "2", "low": "1",
           "close": "2", "volume": "3"}
    table = _row_text(list(row)) + _row_text(list(row.values()))
    result = _outcome(_write(folder / "aapl.csv", table.encode()))
    message = InMessage(b"AAPL", orjson.dumps(row), partition=0, offset=0)
    assert isinstance(result, ReadResult)
    if after in TIME_PARTS:
        assert [bar.date for bar in result.bars] == [decode_bar(message).date] == [day]
    else:
        assert [letter.reason for letter in result.dead_letters] == ["bad_date"]
        with pytest.raises(BarError, match="bad_date"):
            decode_bar(message)


@FUZZ
@given(data=st.data())
def test_missing_columns_are_named_with_what_was_found(
        folder: Path, layouts: list[Layout], data: st.DataObject) -> None:
    name, header, row = data.draw(st.sampled_from(layouts), label="layout")
    layout = detect_layout(header, file_name=name)
    # At least one column stays: a file with no columns at all is the empty file below.
    removed = data.draw(st.sets(st.sampled_from(REQUIRED), min_size=1, max_size=len(REQUIRED) - 1),
                        label="removed")
    gone = {getattr(layout, field) for field in removed}
    kept_header = [cell for i, cell in enumerate(header) if i not in gone]
    kept_row = [cell for i, cell in enumerate(row) if i not in gone]
    outcome = _outcome(_write(folder / name, (_row_text(kept_header) + _row_text(kept_row)).encode()))
    # A file whose first column is an unnamed index (pandas) takes it as the date column.
    if removed == {"date"} and normalise(kept_header[0]) in UNNAMED_INDEX:
        assert isinstance(outcome, ReadResult) and outcome.rows_read == 1
        return
    assert isinstance(outcome, LayoutError)
    message = str(outcome)
    missing = message.split("cannot tell which columns hold ", 1)[1].split(";", 1)[0]
    index_first = normalise(kept_header[0]) in UNNAMED_INDEX
    assert set(missing.split(", ")) == removed - ({"date"} if index_first else set())
    assert "found columns: " in message and f"needs {', '.join(REQUIRED)}" in message
    assert all(cell in message for cell in kept_header)


ENCODABLE_TICKERS = st.text(alphabet="ABCXYZ.ÄÖÜÉ", min_size=1, max_size=6)


@SMALL
@given(tickers=st.lists(ENCODABLE_TICKERS, min_size=1, max_size=4, unique=True),
       encoding=st.sampled_from(("utf-8", "utf-8-sig", "latin-1", "utf-16", "utf-16-le", "utf-16-be")))
@example(tickers=["ABC"], encoding="utf-16")
def test_encodings_read_the_same_bars(folder: Path, tickers: list[str], encoding: str) -> None:
    # Windows exports are Latin-1 or UTF-16 ("Unicode text") with a byte-order mark.
    lines = ["Ticker,Date,Open,High,Low,Close,Volume"]
    lines += [f"{t},2013-02-{8 + i:02d},{i + 1}.5,{i + 2}.25,{i + 1}.0,{i + 2}.0,{1000 * i}"
              for i, t in enumerate(tickers)]
    text = "\r\n".join(lines) + "\r\n"
    bom = {"utf-16-le": "\ufeff", "utf-16-be": "\ufeff"}.get(encoding, "")
    plain, encoded = folder / "utf-8" / "prices.csv", folder / encoding / "prices.csv"
    for path, data in ((plain, text.encode()), (encoded, (bom + text).encode(encoding))):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    got = _outcome(encoded)
    assert isinstance(got, ReadResult) and not got.dead_letters
    assert got.bars == read_csv_bars([plain]).bars
    assert {b.ticker for b in got.bars} == set(tickers)


@pytest.mark.parametrize(("text", "error"), [
    ("", "the file is empty"),
    ("\n\nDate,Open,High,Low,Close,Volume\n", "starts with a blank line"),
    ("Datum;Eröffnung;Schluss\n1.2.2013;1;2\n", "found columns: Datum, Eröffnung, Schluss"),
])
def test_empty_and_unmappable_files_are_refused_by_name(folder: Path, text: str, error: str) -> None:
    outcome = _outcome(_write(folder / "aapl.csv", text.encode()))
    assert isinstance(outcome, LayoutError) and error in str(outcome)


def test_header_only_files_read_no_rows(folder: Path, layouts: list[Layout]) -> None:
    for name, header, _ in layouts:
        result = _outcome(_write(folder / name, (_row_text(header) + "\n\n").encode()))
        assert isinstance(result, ReadResult)
        assert (result.rows_read, result.bars, result.dead_letters) == (0, [], [])


# -- the worker's decoder and batches ----------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ("ticker", "date", "open", "high", "low", "close", "volume", "adj_close", "source")
JUNK_VALUES = st.one_of(JSON, NUMBERS, DATES)


@st.composite
def near_valid_records(draw: st.DrawFn, junk: st.SearchStrategy[Any], replaced: int = 3) -> dict[str, Any]:
    """A valid bar's record with some fields (up to ``replaced``) replaced by ``junk``, dropped, or
    joined by extra ones."""
    ticker = draw(st.sampled_from(("AAA", "BBB", "CCC")))
    day = draw(st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2020, 3, 1)))
    record: dict = Bar(ticker, day, 10.0, 11.0, 9.0, 10.5, 1000.0, 10.4, "f.csv:2").to_dict()
    for name in draw(st.sets(st.sampled_from(FIELDS), max_size=replaced)):
        record[name] = draw(junk)
    for name in draw(st.sets(st.sampled_from(FIELDS), max_size=2)):
        record.pop(name)
    record.update(draw(st.dictionaries(st.text(max_size=6), JSON, max_size=2)))
    return record


def near_valid_bars() -> st.SearchStrategy[bytes]:
    """A valid bar's JSON with some fields replaced by junk, dropped, or joined by extra ones."""
    return near_valid_records(JUNK_VALUES).map(orjson.dumps)


Key = bytes | None
Value = bytes | None
MESSAGE_VALUES = st.one_of(st.none(), st.binary(max_size=60), JSON.map(orjson.dumps), near_valid_bars())
KEYS = st.one_of(st.none(), st.sampled_from((b"AAA", b"BBB", b"CCC")), st.binary(max_size=4))


@FUZZ
@given(values=st.lists(st.tuples(KEYS, MESSAGE_VALUES), max_size=12))
# Prices near the float limit, valid: the intervals and errors overflow (infinite, written as null),
# the message still ends as a result, its state reads back from its bytes as it was, and the core
# says nothing about it on stderr.
@pytest.mark.filterwarnings("error::RuntimeWarning")
@example(values=[(b"AAA", b'{"ticker":"AAA","date":"2020-01-06","open":1e308,"high":1.7e308,"low":1e-300,'
                          b'"close":1.6e308,"volume":1e308}')])
def test_every_message_is_one_result_or_one_dead_letter(values: list[tuple[Key, Value]]) -> None:
    messages = [InMessage(key, value, partition=0, offset=i) for i, (key, value) in enumerate(values)]
    out = BatchProcessor(CoreConfig(model="arima", window=33, refit_every=3), clock=lambda: "now").process(
        messages, {})
    dead = Counter(letter.source for letter in out.dead_letters)
    assert all(count == 1 for count in dead.values())
    assert all(letter.reason in REASONS for letter in out.dead_letters)
    assert set(dead) <= {f"bars/0/{m.offset}" for m in messages}
    applied = [m for m in messages if f"bars/0/{m.offset}" not in dead]
    assert Counter(bar for bar, _ in out.results) == Counter(decode_bar(m) for m in applied)
    for state in out.states.values():  # what the worker stores, and reads back after a restart
        assert repr(TickerState.from_bytes(state.to_bytes())) == repr(state)


@FUZZ
@given(key=KEYS, value=MESSAGE_VALUES)
def test_decode_bar_gives_a_bar_or_a_reason(key: Key, value: Value) -> None:
    try:
        bar = decode_bar(InMessage(key, value, partition=0, offset=0))
    except BarError as error:
        assert error.reason in REASONS
    else:
        assert key is None or key == bar.ticker.encode()
        assert value is not None and Bar.from_dict(orjson.loads(value)) == bar


#: Values of a JSON number's type but any size (NaN, infinities, ints beyond a float), of types only a
#: caller in Python gives (bool, a str subclass, numpy's float), or other junk.
PLAIN_JUNK = st.one_of(
    st.sampled_from((float("nan"), float("inf"), -float("inf"), 0.0, -0.0, -1.0, 5e-324, 1e308, 2**53 + 1,
                     10**400, True, False, np.float64(10.2), np.float64("nan"), "", " ", "10.5", "nan",
                     " 2020-01-06 ", "2020-01-06T00:00", None, [], {})),
    st.integers(-5, 20), st.floats(), st.integers(min_value=-(10**400), max_value=10**400),
    st.text(max_size=4).map(type("Text", (str,), {})),
)


def _verdict(record: Any) -> str:
    """What :meth:`Bar.from_dict` makes of ``record``: the bar with its values' types, or the error."""
    try:
        bar = Bar.from_dict(record)
    except (BarError, OverflowError) as error:
        return f"{type(error).__name__}: {error}"
    return repr([(type(value), value) for value in dataclasses.astuple(bar)])


def _record(**changes: Any) -> dict[str, Any]:
    """A valid bar's record (of ints), with ``changes``."""
    return {"ticker": "AAA", "date": "2020-01-06", "open": 10, "high": 11, "low": 9, "close": 10, "volume": 0,
            **changes}


@FUZZ
@given(record=st.one_of(near_valid_records(PLAIN_JUNK, replaced=5), JSON))
@example(record=_record())
@example(record=_record(adj_close=10, source="f.csv:2"))
@example(record=_record(open=True))
@example(record=_record(volume=False))
@example(record=_record(high=float("nan")))
@example(record=_record(source=5))
@example(record=_record(ticker=" AAA "))
@example(record=_record(ticker=""))
@example(record=_record(date=""))
@example(record=_record(date=" 2020-01-06 "))
@example(record=_record(open=1.7e308, high=1.7e308, low=1.6e308, close=1.7e308))  # a sum that overflows
@example(record=_record(volume=10**400))
def test_a_dict_of_plain_values_gives_what_any_mapping_gives(record: Any) -> None:
    # A dict of plain values takes a short way (the worker's every message): whatever it makes of a
    # record, a bar with the same values of the same types or the same error, any other mapping makes.
    assert _verdict(record) == _verdict(MappingProxyType(record) if isinstance(record, dict) else record)


LOG_PRICES = st.floats(min_value=-300.0, max_value=300.0)


@SMALL
@given(levels=st.lists(st.tuples(LOG_PRICES, st.floats(0, 5), st.floats(0, 5)), min_size=34, max_size=45),
       volume=st.sampled_from((0.0, 1.0, 1e308)))
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_extreme_valid_prices_give_a_result_for_every_bar(
        levels: list[tuple[float, float, float]], volume: float) -> None:
    # Prices anywhere in 1e-300..1e300 (valid bars) through ARIMA fits and refits: no exception.
    day, bars = dt.date(2020, 1, 6), []
    for level, up, down in levels:
        close = 10.0**level
        bars.append(Bar("AAA", day, close, close * 10.0**up, close / 10.0**down, close, volume))
        day += dt.timedelta(days=1)
    messages = [InMessage(b"AAA", orjson.dumps(b.to_dict()), 0, i) for i, b in enumerate(bars)]
    out = BatchProcessor(CoreConfig(model="arima", window=33, refit_every=1), clock=lambda: "now").process(
        messages, {})
    assert not out.dead_letters
    assert [bar for bar, _ in out.results] == bars
