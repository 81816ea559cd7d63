"""Column detection on the real files' headers and their common cousins."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from producers.layouts import LayoutError, detect_layout, parse_columns, ticker_from_file_name


def _header(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig") as f:
        return f.readline().rstrip("\r\n").split(",")


def test_kaggle_sp500_layout_has_a_ticker_column(data_dir: Path) -> None:
    layout = detect_layout(_header(data_dir / "sp500-5yr-sample.csv.gz"), file_name="sp500-5yr-sample.csv.gz")
    fields = (layout.date, layout.open, layout.high, layout.low, layout.close, layout.volume)
    assert fields == (0, 1, 2, 3, 4, 5)
    assert (layout.ticker_column, layout.ticker, layout.adj_close) == (6, None, None)


def test_bokeh_ticker_first_layout_keeps_adj_close(data_dir: Path) -> None:
    layout = detect_layout(_header(data_dir / "bokeh-stocks.csv.gz"), file_name="bokeh-stocks.csv.gz")
    assert (layout.ticker_column, layout.date, layout.close, layout.adj_close) == (0, 1, 5, 7)


def test_tushare_layout_uses_ts_code_trade_date_and_vol(data_dir: Path) -> None:
    layout = detect_layout(_header(data_dir / "601988.SH.csv"), file_name="601988.SH.csv")
    assert (layout.ticker_column, layout.date, layout.volume) == (0, 1, 9)
    assert layout.close == 5  # not pre_close (6)


def test_vietnamese_export_ignores_the_unnamed_index_and_time(data_dir: Path) -> None:
    header = _header(data_dir / "vgi" / "Vienthong.csv")
    layout = detect_layout(header, file_name="vgi/Vienthong.csv")
    assert header[layout.ticker_column] == "code"
    assert header[layout.date] == "date"
    assert header[layout.volume] == "nmVolume"
    assert header[layout.adj_close] == "adClose"
    assert header[layout.close] == "close"


def test_single_ticker_file_takes_its_name_or_the_given_ticker(data_dir: Path) -> None:
    header = _header(data_dir / "vgi" / "vgi2.csv")
    assert detect_layout(header, file_name="vgi/vgi2.csv").ticker == "VGI2"
    assert detect_layout(header, file_name="vgi/vgi2.csv", ticker="VGI").ticker == "VGI"
    assert detect_layout(header, file_name="vgi/vgi2.csv").volume == 5


def test_yahoo_layout() -> None:
    header = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
    layout = detect_layout(header, file_name="AAPL.csv")
    assert (layout.close, layout.adj_close, layout.volume, layout.ticker) == (4, 5, 6, "AAPL")


def test_pandas_unnamed_date_index_is_the_date() -> None:
    for first in ("", "Unnamed: 0"):
        layout = detect_layout([first, "open", "high", "low", "close", "volume"], file_name="x.csv")
        assert layout.date == 0


def test_ticker_given_does_not_override_a_ticker_column() -> None:
    layout = detect_layout(["Ticker", "Date", "Open", "High", "Low", "Close", "Volume"], file_name="x.csv",
                           ticker="ZZZ")
    assert (layout.ticker_column, layout.ticker) == (0, None)


def test_columns_override_maps_foreign_names() -> None:
    header = ["Datum", "Eroeffnung", "Hoch", "Tief", "Schluss", "Umsatz"]
    columns = parse_columns("date=Datum,open=Eroeffnung,high=Hoch,low=Tief,close=Schluss,volume=Umsatz")
    layout = detect_layout(header, file_name="dax.csv", ticker="DAX", columns=columns)
    fields = (layout.date, layout.open, layout.high, layout.low, layout.close, layout.volume)
    assert fields == (0, 1, 2, 3, 4, 5)
    assert layout.width == 6


def test_columns_override_wins_over_detection() -> None:
    header = ["date", "open", "high", "low", "close", "adj", "volume"]
    layout = detect_layout(header, file_name="x.csv", columns={"close": "adj"})
    assert layout.close == 5


def test_unknown_layout_names_found_and_needed_columns() -> None:
    with pytest.raises(LayoutError) as caught:
        detect_layout(["when", "price"], file_name="odd.csv")
    message = str(caught.value)
    assert "odd.csv" in message
    assert "found columns: when, price" in message
    assert "date, open, high, low, close, volume" in message
    assert "--columns" in message


def test_override_naming_a_missing_column_is_a_layout_error() -> None:
    with pytest.raises(LayoutError, match="maps close to 'Schluss', which is not a column"):
        detect_layout(["date", "open", "high", "low", "close", "volume"], file_name="x.csv",
                      columns={"close": "Schluss"})


@pytest.mark.parametrize("text, message", [
    ("date", "is not FIELD=COLUMN"),
    ("=Datum", "is not FIELD=COLUMN"),
    ("price=Kurs", "unknown field 'price'"),
])
def test_bad_columns_option(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_columns(text)


@pytest.mark.parametrize("name, ticker", [
    ("aapl.csv", "AAPL"), ("dir/MSFT.csv.gz", "MSFT"), ("601988.SH.csv", "601988.SH"),
])
def test_ticker_from_file_name(name: str, ticker: str) -> None:
    assert ticker_from_file_name(name) == ticker


def test_a_field_whose_name_two_columns_have_is_refused_unless_one_is_chosen() -> None:
    # The first one was taken without a word: a file's second close column could be the one it meant.
    header = ["date", "open", "high", "low", "Close", "close", "volume"]
    with pytest.raises(LayoutError, match=r"^x\.csv: close could be any of the columns 5 \('Close'\), 6 "
                                          r"\('close'\); keep one, or say which with --columns close=NAME$"):
        detect_layout(header, file_name="x.csv")
    assert detect_layout(header, file_name="x.csv", columns={"close": "close"}).close == 5
