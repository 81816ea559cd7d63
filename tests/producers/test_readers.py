"""Reading real files and bad rows: every row ends as a bar, a dead letter or a filtered row."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from models.core.bar import Bar
from producers import readers
from producers.readers import MAX_COLUMNS, MAX_LINE, LayoutError, ReadResult, TooManyRows, read_csv_bars

HEADER = "date,open,high,low,close,volume,Name\n"
GOOD = "2013-02-08,15.07,15.12,14.63,14.75,8407500,AAL"


def _accounted(result: ReadResult) -> bool:
    return result.rows_read == len(result.bars) + len(result.dead_letters) + result.filtered


def _in_event_time_order(bars: list[Bar]) -> bool:
    keys = [(b.date, b.ticker) for b in bars]
    return keys == sorted(keys)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_bokeh_file_reads_every_row(data_dir: Path) -> None:
    result = read_csv_bars([data_dir / "bokeh-stocks.csv.gz"])
    assert (result.rows_read, len(result.bars), result.dead_letters) == (12_154, 12_154, [])
    assert Counter(b.ticker for b in result.bars) == {"AAPL": 3270, "IBM": 3270, "MSFT": 3270, "GOOG": 2148,
                                                      "FB": 196}
    assert _in_event_time_order(result.bars)
    first = result.bars[0]
    assert first.source == "bokeh-stocks.csv.gz:2" and first.adj_close == pytest.approx(4.186662803811)


def test_tushare_file_parses_compact_dates(data_dir: Path) -> None:
    result = read_csv_bars([data_dir / "601988.SH.csv"])
    assert (result.rows_read, len(result.bars)) == (3681, 3681)
    assert {b.ticker for b in result.bars} == {"601988.SH"}
    assert (result.bars[0].date, result.bars[-1].date) == (dt.date(2007, 1, 4), dt.date(2022, 3, 17))
    assert result.bars[0].volume == pytest.approx(7281333.33)  # vol kept as published, in lots


def test_unsorted_vietnamese_export_is_sorted_not_rejected(data_dir: Path) -> None:
    result = read_csv_bars([data_dir / "vgi" / "Vienthong.csv"])
    assert (result.rows_read, len(result.bars), result.dead_letters) == (4396, 4396, [])
    assert Counter(b.ticker for b in result.bars) == {"VGI": 821, "VTC": 1252, "ABC": 1252, "TEL": 1071}
    assert _in_event_time_order(result.bars)
    assert sum(b.volume == 0 for b in result.bars) >= 330 + 73 + 654  # zero volume is a valid bar


def test_folder_is_read_recursively_with_relative_sources(data_dir: Path) -> None:
    result = read_csv_bars([data_dir / "vgi"], ticker="VGI2")
    assert result.rows_read == 4396 + 854
    assert {b.source.split(":")[0] for b in result.bars} == {"Vienthong.csv", "vgi2.csv"}
    assert sum(b.ticker == "VGI2" for b in result.bars) == 854


def test_sp500_slice_rejects_the_known_bad_rows(sp500_slice: tuple[Path, list[str]]) -> None:
    path, lines = sp500_slice
    result = read_csv_bars([path])
    assert result.rows_read == len(lines) - 1 and _accounted(result)
    by_row = {(d.raw.split(",")[-1], d.raw.split(",")[0]): d for d in result.dead_letters}
    lnt = by_row[("LNT", "2016-05-19")]
    assert lnt.reason in {"high_below_open_close", "low_above_open_close"}
    assert lnt.source.startswith("slice.csv.gz:") and lnt.ticker == "LNT"
    [lnt_line] = [line for line in lines if line.startswith("2016-05-19") and ",LNT" in line]
    assert lnt.raw == lnt_line.rstrip("\n")
    assert {d.reason for d in result.dead_letters if d.ticker == "BHF"} == {"missing_field"}
    assert _in_event_time_order(result.bars)


@pytest.mark.parametrize("row, reason", [
    ("2013-02-08,,15.12,14.63,14.75,8407500,AAL", "missing_field"),
    ("2013-02-08,15.07,15.12,14.63,14.75,8407500,", "missing_field"),
    ("2013-02-08,15.07,15.12,14.63", "missing_field"),
    ("2013-02-08,abc,15.12,14.63,14.75,8407500,AAL", "not_numeric"),
    ("2013-02-08,15.07,15.12,14.63,14.75,1e6 shares,AAL", "not_numeric"),
    ("2013-02-08,NaN,15.12,14.63,14.75,8407500,AAL", "not_finite"),
    ("2013-02-08,15.07,inf,14.63,14.75,8407500,AAL", "not_finite"),
    ("2013-02-08,0,15.12,14.63,14.75,8407500,AAL", "non_positive_price"),
    ("2013-02-08,15.07,15.12,-1,14.75,8407500,AAL", "non_positive_price"),
    ("2013-02-08,15.07,15.0,14.63,15.10,8407500,AAL", "high_below_open_close"),
    ("2013-02-08,15.07,15.12,14.80,14.75,8407500,AAL", "low_above_open_close"),
    ("2013-02-08,15.07,15.12,14.63,14.75,-1,AAL", "negative_volume"),
    ("2013-02-30,15.07,15.12,14.63,14.75,8407500,AAL", "bad_date"),
    ("2013.02.08,15.07,15.12,14.63,14.75,8407500,AAL", "bad_date"),
    ("1850-02-08,15.07,15.12,14.63,14.75,8407500,AAL", "bad_date"),
    (f"2013-02-08,15.07,15.12,14.63,14.75,8407500,{'X' * 33}", "bad_ticker"),
    ("2013-02-08,15.07,15.12,14.63,14.75,8407500,A\x1b[2JX", "bad_ticker"),  # echoed in logs and labels
    ("2013-02-08,15.07,15.12,14.63,14.75,8407500,A\u2028B", "bad_ticker"),
    (GOOD, "duplicate"),
])
def test_each_rejection_reason_keeps_the_raw_row(tmp_path: Path, row: str, reason: str) -> None:
    path = _write(tmp_path / "bad.csv", HEADER + GOOD + "\n" + row + "\n")
    result = read_csv_bars([path])
    assert len(result.bars) == 1 and result.bars[0].source == "bad.csv:2"
    [letter] = result.dead_letters
    assert (letter.reason, letter.raw, letter.source) == (reason, row, "bad.csv:3")
    assert letter.detail and dt.datetime.fromisoformat(letter.at).tzinfo is not None


def test_duplicates_across_files_keep_the_first(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", HEADER + GOOD + "\n")
    _write(tmp_path / "b.csv", HEADER + GOOD.replace("14.75", "14.76") + "\n")
    result = read_csv_bars([tmp_path])
    assert [b.source for b in result.bars] == ["a.csv:2"]
    assert [(d.reason, d.source) for d in result.dead_letters] == [("duplicate", "b.csv:2")]
    assert "already accepted from a.csv:2" in result.dead_letters[0].detail


def test_quoted_multiline_row_keeps_its_text_and_first_line(tmp_path: Path) -> None:
    bad = '2013-02-11,"15\n.0",15.12,14.63,14.75,8407500,AAL'
    path = _write(tmp_path / "q.csv", HEADER + bad + "\n" + GOOD + "\n\n")
    result = read_csv_bars([path])
    assert result.rows_read == 2  # the blank last line is not a row
    assert [(d.reason, d.raw, d.source) for d in result.dead_letters] == [("not_numeric", bad, "q.csv:2")]
    assert result.bars[0].source == "q.csv:4"


def test_us_dates_semicolons_and_latin1(tmp_path: Path) -> None:
    path = tmp_path / "börse.csv"
    path.write_bytes("Datum;Eröffnung;Hoch;Tief;Schluss;Umsatz\n2/8/2013;1;2;0.5;1.5;10\n".encode("latin-1"))
    columns = {"date": "Datum", "open": "Eröffnung", "high": "Hoch", "low": "Tief", "close": "Schluss",
               "volume": "Umsatz"}
    [bar] = read_csv_bars([path], columns=columns, ticker="DAX").bars
    assert (bar.ticker, bar.date, bar.close) == ("DAX", dt.date(2013, 2, 8), 1.5)


def test_a_day_first_file_is_read_day_first_from_its_first_row(tmp_path: Path) -> None:
    # Saved by a spreadsheet outside the US: the 1st of March comes before a day that shows the order.
    rows = ["01/03/2013,1,2,0.5,1.5,10", "04/03/2013,1,2,0.5,1.5,10", "13/03/2013,1,2,0.5,1.5,10"]
    path = _write(tmp_path / "eu.csv", "Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n")
    result = read_csv_bars([path])
    assert [b.date for b in result.bars] == [dt.date(2013, 3, 1), dt.date(2013, 3, 4), dt.date(2013, 3, 13)]
    assert not result.dead_letters


def test_the_order_is_each_files_own(tmp_path: Path) -> None:
    header = "Date,Open,High,Low,Close,Volume\n"
    _write(tmp_path / "eu.csv", header + "02/01/2013,1,2,0.5,1.5,10\n13/01/2013,1,2,0.5,1.5,10\n")
    _write(tmp_path / "us.csv", header + "02/01/2013,1,2,0.5,1.5,10\n02/13/2013,1,2,0.5,1.5,10\n")
    result = read_csv_bars([tmp_path])
    assert sorted((b.ticker, b.date.isoformat()) for b in result.bars) == [
        ("EU", "2013-01-02"), ("EU", "2013-01-13"), ("US", "2013-02-01"), ("US", "2013-02-13")]


def test_a_file_with_both_orders_rejects_what_the_us_order_cannot_read(tmp_path: Path) -> None:
    header = "Date,Open,High,Low,Close,Volume\n"
    path = _write(tmp_path / "mixed.csv", header + "13/02/2013,1,2,0.5,1.5,10\n02/14/2013,1,2,0.5,1.5,10\n")
    result = read_csv_bars([path])
    assert [b.date for b in result.bars] == [dt.date(2013, 2, 14)]
    assert [(d.reason, d.source) for d in result.dead_letters] == [("bad_date", "mixed.csv:2")]
    assert "is not M/D/YYYY" in result.dead_letters[0].detail


def test_dotted_dates_are_day_first(tmp_path: Path) -> None:
    path = _write(tmp_path / "xetra.csv", "Date;Open;High;Low;Close;Volume\n08.02.2013;1;2;0.5;1.5;10\n")
    [bar] = read_csv_bars([path]).bars
    assert bar.date == dt.date(2013, 2, 8)


def test_selection_filters_rows_without_rejecting_them(data_dir: Path) -> None:
    result = read_csv_bars([data_dir / "bokeh-stocks.csv.gz"], tickers=["MSFT", "FB"],
                           start=dt.date(2013, 1, 1), end=dt.date(2013, 1, 31))
    assert {b.ticker for b in result.bars} == {"MSFT", "FB"}
    assert all(dt.date(2013, 1, 1) <= b.date <= dt.date(2013, 1, 31) for b in result.bars)
    assert len(result.bars) == 2 * 21 and result.dead_letters == []
    assert result.filtered == 12_154 - 42 and _accounted(result)


def test_start_after_end_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="after the end date"):
        read_csv_bars([_write(tmp_path / "a.csv", HEADER)], start=dt.date(2020, 1, 2),
                      end=dt.date(2020, 1, 1))


def test_unknown_layout_and_empty_file_are_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="found columns: when, price"):
        read_csv_bars([_write(tmp_path / "odd.csv", "when,price\n2020-01-01,3\n")])
    with pytest.raises(LayoutError, match="empty"):
        read_csv_bars([_write(tmp_path / "empty.csv", "")])


def test_a_file_that_is_not_a_table_is_a_layout_error(tmp_path: Path) -> None:
    huge_field = '"' + "x" * 200_000 + '"'
    with pytest.raises(LayoutError, match=r"big\.csv:3: cannot be read as CSV"):
        read_csv_bars([_write(tmp_path / "big.csv", HEADER + GOOD + "\n" + huge_field + "\n")])


def test_a_single_path_is_a_list_of_one(data_dir: Path) -> None:
    assert read_csv_bars(str(data_dir / "vgi" / "vgi2.csv")).rows_read == 854


def test_missing_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.csv does not exist"):
        read_csv_bars([tmp_path / "nope.csv"])
    (tmp_path / "dir").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no \.csv"):
        read_csv_bars([tmp_path / "dir"])


def test_a_row_limit_stops_the_read_at_the_first_row_past_it(tmp_path: Path) -> None:
    path = _write(tmp_path / "aal.csv", HEADER + "\n".join([GOOD.replace("-08", "-07"), "\n", GOOD, "x,y"]))
    assert read_csv_bars(path, max_rows=3).rows_read == 3  # the blank line is not a row
    with pytest.raises(TooManyRows, match=r"^aal.csv:6: more than 2 rows$"):
        read_csv_bars(path, max_rows=2)


def test_kept_dead_letters_are_the_first_ones_and_all_are_counted(tmp_path: Path) -> None:
    rows = [GOOD.replace("14.63", "16"), GOOD.replace("8407500", "-1"), GOOD.replace("14.63", "16"), GOOD]
    result = read_csv_bars(_write(tmp_path / "aal.csv", HEADER + "\n".join(rows)), keep_dead_letters=1)
    assert [d.source for d in result.dead_letters] == ["aal.csv:2"]
    assert result.rejected_by_reason() == {"low_above_open_close": 2, "negative_volume": 1}
    assert result.rows_read == len(result.bars) + result.dead_letters_total + result.filtered == 4


@pytest.mark.parametrize(("text", "says"), [
    ("," * MAX_COLUMNS + "\n" + GOOD, f"aal.csv: the header has {MAX_COLUMNS + 1:,} columns, more than "),
    (HEADER + "1" * (MAX_LINE + 1), f"aal.csv:2: a line of more than {MAX_LINE:,} characters"),
    # Quoted fields of short lines, each under the csv module's field limit: 1.3 MB of one row, which
    # a 65 KB gzip upload made 63 MB of (and 320 MiB of the API server's memory).
    (HEADER + GOOD + "\n" + "x," + ",".join(['"' + ("a" * 1000 + "\n") * 50 + '"'] * 26),
     f"aal.csv:3: a row of more than {MAX_LINE:,} characters (over 1,048 lines)"),
], ids=["wide header", "long line", "long row of short lines"])
def test_a_wide_header_or_a_long_line_is_refused_without_reading_on(tmp_path: Path, text: str,
                                                                    says: str) -> None:
    with pytest.raises(LayoutError) as error:
        read_csv_bars(_write(tmp_path / "aal.csv", text))
    assert str(error.value).startswith(says) and len(str(error.value)) < 200


def test_a_file_that_is_no_csv_is_refused_at_its_line_when_its_dates_have_slashes(tmp_path: Path) -> None:
    # Slash dates are read to the end first (day or month first?): the error was said at line 1.
    rows = [f"1/{day}/2024,10,11,9,10,100" for day in range(2, 10)] + ["2/2/2024,10,11,9,10," + "9" * 200_000]
    path = _write(tmp_path / "l.csv", "date,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    with pytest.raises(LayoutError, match=r"^l\.csv:10: cannot be read as CSV: field larger than"):
        read_csv_bars(path, ticker="L")


def test_a_long_row_of_short_lines_is_refused_holding_no_more_than_the_limit(tmp_path: Path) -> None:
    # An API upload of 65 KB: 630 quoted fields of two 50,000-character lines, one row of 63 MB,
    # which the reader telling the dates' order held whole (and the server 320 MiB for it).
    field = '"' + ("a" * 50_000 + "\n") * 2 + '"'
    text = "date,open,high,low,close,volume\n2024-01-02,10,11,9,10,100," + ",".join([field] * 630) + "\n"
    path = tmp_path / "ml.csv.gz"
    path.write_bytes(gzip.compress(text.encode(), 1))
    tracemalloc.start()
    try:
        with pytest.raises(LayoutError, match=r"^ml\.csv\.gz:2: a row of more than 1,048,576 characters"):
            read_csv_bars(path, ticker="ML")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MAX_LINE


def test_a_file_that_cannot_be_opened_or_is_a_pipe_is_said_so(tmp_path: Path, monkeypatch) -> None:
    # Was "starts like gzip but cannot be decompressed ([Errno 13] Permission denied)", and a pipe
    # (`<(zcat ...)`) "does not exist".
    path = _write(tmp_path / "aal.csv", HEADER + GOOD)
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    with pytest.raises(FileNotFoundError, match=r"rows\.csv is not a file or a folder \(a pipe or a device"):
        read_csv_bars(fifo)

    def refused(path: Path) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(readers, "_binary", refused)
    with pytest.raises(LayoutError, match=r"^aal\.csv: cannot be read \(Permission denied\)$"):
        read_csv_bars(path)


def test_a_folder_whose_files_cannot_all_be_read_is_refused(tmp_path: Path, monkeypatch) -> None:
    # Files behind a link to nothing, or in a subfolder that cannot be listed, were left out without a word.
    _write(tmp_path / "aal.csv", HEADER + GOOD)
    (tmp_path / "gone.csv").symlink_to(tmp_path / "nowhere.csv")
    with pytest.raises(FileNotFoundError, match=r"gone\.csv links to nothing: its rows would be left out"):
        read_csv_bars(tmp_path)
    (tmp_path / "gone.csv").unlink()
    (tmp_path / "sub").mkdir()
    listing = os.scandir

    def unlistable(path: object = ".") -> object:
        if Path(str(path)).name == "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", unlistable)
    with pytest.raises(OSError, match=r"sub: cannot be listed \(Permission denied\): its files would"):
        read_csv_bars(tmp_path)
