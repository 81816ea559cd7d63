"""Historical OHLCV CSV files, plain or gzipped, into validated bars and dead letters.

Every row of every file ends in exactly one of three places: a bar, a dead letter with its
reason, or the filtered count (outside the selected tickers or dates). Blank lines are not rows.
Bars come back sorted by (date, ticker), the order a live feed delivers them in, whatever the
order of the files (``vgi/Vienthong.csv`` is not sorted by date).

Examples
--------
>>> import gzip, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "msft.csv").write_text(
...     "Date,Open,High,Low,Close,Adj Close,Volume\\n"
...     "2/11/2013,27.35,27.71,27.31,27.55,25.2,33318306\\n"
...     "2/8/2013,27.35,27.0,27.31,27.55,25.2,1\\n")
>>> result = read_csv_bars([folder])
>>> [(b.ticker, b.date.isoformat(), b.source) for b in result.bars]
[('MSFT', '2013-02-11', 'msft.csv:2')]
>>> [(d.reason, d.source) for d in result.dead_letters], result.rows_read
([('high_below_open_close', 'msft.csv:3')], 2)
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import gzip
import io
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from models.core.bar import Bar, BarError
from models.core.deadletter import DeadLetter
from producers.dates import is_day_first
from producers.layouts import Layout, LayoutError, detect_layout
from producers.validation import RowChecker

__all__ = ["LayoutError", "ReadResult", "csv_files", "read_csv_bars"]

SUFFIXES = (".csv", ".csv.gz")
DELIMITERS = (",", ";", "\t")


@dataclass
class ReadResult:
    """What a read produced; ``rows_read == len(bars) + len(dead_letters) + filtered`` always."""

    bars: list[Bar] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    rows_read: int = 0
    filtered: int = 0

    def rejected_by_reason(self) -> dict[str, int]:
        """Dead-letter counts per reason, most frequent first."""
        counts: dict[str, int] = {}
        for letter in self.dead_letters:
            counts[letter.reason] = counts.get(letter.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def csv_files(paths: Sequence[str | Path]) -> Iterator[tuple[Path, str]]:
    """Each file to read with the label its rows' ``source`` uses.

    A file is read whatever its name and labelled by its base name; a directory contributes its
    ``*.csv`` and ``*.csv.gz`` files, recursively, in name order, labelled relative to it.
    """
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES))
            if not found:
                raise FileNotFoundError(f"{path} holds no .csv or .csv.gz files")
            for file in found:
                yield file, file.relative_to(path).as_posix()
        elif path.is_file():
            yield path, path.name
        else:
            raise FileNotFoundError(f"{path} does not exist")


def _text(path: Path, label: str) -> str:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip's magic number, whatever the file is called
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # cut short or corrupt (BadGzipFile is an OSError)
            raise LayoutError(f"{label}: starts like gzip but cannot be decompressed ({exc})") from exc
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # Excel's "Unicode text" export
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LayoutError(f"{label}: has a UTF-16 byte-order mark but is not UTF-16 ({exc})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Older Windows exports are Latin-1/cp1252; latin-1 decodes any byte, losing no row.
        return data.decode("latin-1")


def _delimiter(header_line: str) -> str:
    return max(DELIMITERS, key=header_line.count)


def _read_file(path: Path, label: str, result: ReadResult, checker: RowChecker, *, ticker: str | None,
               columns: Mapping[str, str] | None) -> None:
    # Lines are kept so a rejected row's dead letter carries its text exactly as in the file, even
    # when a quoted field spans lines; line_num tells where each row ends.
    lines = io.StringIO(_text(path, label), newline="").readlines()
    if not lines or not lines[0].strip():
        raise LayoutError(f"{label}: the file is empty or starts with a blank line; it needs a header row")
    delimiter = _delimiter(lines[0])
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        layout = detect_layout(next(reader), file_name=label, ticker=ticker, columns=columns)
        checker.day_first = _day_first(lines[reader.line_num:], delimiter, layout.date)
        _read_rows(reader, lines, label, layout, result, checker)
    except csv.Error as exc:  # e.g. a field over the csv module's size limit: the file is not a table
        raise LayoutError(f"{label}:{reader.line_num}: cannot be read as CSV: {exc}") from exc


def _day_first(rows: list[str], delimiter: str, column: int) -> bool:
    """Whether the slash dates of a file's data ``rows`` are day-first. Only files whose first date
    has a slash are read twice for it (ISO and ``YYYYMMDD`` files, the big ones, are not)."""
    first = next((row for row in csv.reader(rows, delimiter=delimiter) if row), None)
    if first is None or len(first) <= column or "/" not in first[column]:
        return False
    return is_day_first(row[column] for row in csv.reader(rows, delimiter=delimiter) if len(row) > column)


def _read_rows(reader: Iterator[list[str]], lines: list[str], label: str, layout: Layout,
               result: ReadResult, checker: RowChecker) -> None:
    d, o, h, lo, c, v = layout.date, layout.open, layout.high, layout.low, layout.close, layout.volume
    adj, tc, width = layout.adj_close, layout.ticker_column, layout.width
    constant_ticker = layout.ticker or ""
    bars, check = result.bars, checker.check
    end = reader.line_num  # type: ignore[attr-defined]  # where the header ended
    for row in reader:
        start, end = end + 1, reader.line_num  # type: ignore[attr-defined]  # csv's reader has it
        if not row:
            continue
        result.rows_read += 1
        if len(row) < width:
            row = row + [""] * (width - len(row))  # a short row: its missing cells are empty fields
        ticker = constant_ticker if tc is None else row[tc]
        source = f"{label}:{start}"
        try:
            bar = check(ticker, row[d], row[o], row[h], row[lo], row[c], row[v],
                        "" if adj is None else row[adj], source)
        except BarError as error:
            raw = "".join(lines[start - 1:end]).rstrip("\r\n")
            result.dead_letters.append(DeadLetter.rejected(error, raw=raw, source=source,
                                                           ticker=ticker.strip() or None))
            continue
        if bar is None:
            result.filtered += 1
        else:
            bars.append(bar)


def read_csv_bars(paths: Sequence[str | Path], *, ticker: str | None = None,
                  columns: Mapping[str, str] | None = None, tickers: Collection[str] | None = None,
                  start: dt.date | None = None, end: dt.date | None = None) -> ReadResult:
    """Read, validate and de-duplicate the bars of CSV files and folders of them.

    Parameters
    ----------
    paths
        Files (``.csv``, ``.csv.gz``, or any name when given directly) and directories of them; a
        single path is taken as a list of one.
    ticker
        Ticker of files that have no ticker column (default: the file name, upper-cased).
    columns
        ``field -> column name`` choices that win over detection (see :mod:`producers.layouts`).
    tickers, start, end
        Selection: rows of other tickers or outside ``start..end`` are counted in ``filtered``.

    Raises
    ------
    LayoutError
        A file whose columns cannot be mapped; nothing is returned, so nothing half-read is sent.
    FileNotFoundError
        A path that does not exist or a directory without CSV files.
    """
    if isinstance(paths, str | Path):
        paths = [paths]  # one path, not a sequence of its characters
    if not paths:
        raise ValueError("no input files given")
    checker = RowChecker(tickers=tickers, start=start, end=end)
    result = ReadResult()
    for path, label in csv_files(paths):
        _read_file(path, label, result, checker, ticker=ticker, columns=columns)
    result.bars.sort(key=_event_time)
    return result


def _event_time(bar: Bar) -> tuple[dt.date, str]:
    return bar.date, bar.ticker
