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
import itertools
import os
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, cast

from models.core.bar import Bar, BarError
from models.core.deadletter import DeadLetter
from producers.dates import is_day_first
from producers.layouts import Layout, LayoutError, detect_layout
from producers.validation import RowChecker

__all__ = ["LayoutError", "ReadResult", "TooManyRows", "csv_files", "read_csv_bars"]

SUFFIXES = (".csv", ".csv.gz")
DELIMITERS = (",", ";", "\t")
#: Columns a header may have, and characters a line may have: a bar needs eight fields of a few
#: characters, and a read holds one line (and one row) at a time, so these bound its memory.
MAX_COLUMNS = 1000
MAX_LINE = 1 << 20
#: Bytes decoded at a time while the encoding is told.
CHUNK = 1 << 20


class TooManyRows(ValueError):
    """A read stopped at its row limit (``max_rows``): the input holds more rows than it may."""


@dataclass
class ReadResult:
    """What a read produced; ``rows_read == len(bars) + dead_letters_total + filtered`` always.

    ``dead_letters`` holds every dead letter, or its first ``keep`` when ``keep`` is set;
    ``rejected`` counts them all by reason either way.
    """

    bars: list[Bar] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    rows_read: int = 0
    filtered: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    keep: int | None = None

    def reject(self, letter: DeadLetter) -> None:
        """Count ``letter`` and keep it unless ``keep`` letters are kept already."""
        self.rejected[letter.reason] = self.rejected.get(letter.reason, 0) + 1
        if self.keep is None or len(self.dead_letters) < self.keep:
            self.dead_letters.append(letter)

    @property
    def dead_letters_total(self) -> int:
        """Dead letters of the read, kept or not."""
        return sum(self.rejected.values())

    def rejected_by_reason(self) -> dict[str, int]:
        """Dead-letter counts per reason, most frequent first."""
        return dict(sorted(self.rejected.items(), key=lambda item: (-item[1], item[0])))


def csv_files(paths: Sequence[str | Path]) -> Iterator[tuple[Path, str]]:
    """Each file to read with the label its rows' ``source`` uses.

    A file is read whatever its name and labelled by its base name; a directory contributes its
    ``*.csv`` and ``*.csv.gz`` files, recursively, in name order, labelled relative to it.
    """
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = _csv_files_under(path)
            if not found:
                raise FileNotFoundError(f"{path} holds no .csv or .csv.gz files")
            for file in found:
                yield file, file.relative_to(path).as_posix()
        elif path.is_file():
            yield path, path.name
        elif path.exists():  # a file is read more than once (its encoding, its dates, its rows)
            raise FileNotFoundError(f"{path} is not a file or a folder (a pipe or a device is not read): "
                                    "save its rows to a file")
        else:
            raise FileNotFoundError(f"{path} does not exist")


def _csv_files_under(folder: Path) -> list[Path]:
    """The ``.csv`` and ``.csv.gz`` files under ``folder`` (links to folders not followed), in name
    order. A subfolder that cannot be listed, or a name of them that links to nothing, is an error:
    its rows would be left out of the read without a word."""
    def refuse(error: OSError) -> None:
        raise OSError(f"{error.filename}: cannot be listed ({error.strerror}): its files would be left out "
                      "of the read") from error

    found = []
    for root, _, names in os.walk(folder, onerror=refuse):
        for name in names:
            if name.lower().endswith(SUFFIXES):
                path = Path(root, name)
                if not path.is_file():
                    what = "links to nothing" if path.is_symlink() else "is not a file (a pipe, a device)"
                    raise FileNotFoundError(f"{path} {what}: its rows would be left out of the read")
                found.append(path)
    return sorted(found)


def _binary(path: Path) -> BinaryIO:
    with path.open("rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"  # gzip's magic number, whatever the file is called
    return cast(BinaryIO, gzip.open(path, "rb")) if gzipped else path.open("rb")


def _encoding(path: Path, label: str) -> str:
    """The encoding of the file's text, told by decoding it once, a chunk at a time."""
    try:
        source = _binary(path)
    except OSError as exc:  # no permission, a FIFO gone, a disk error: not the file's content
        raise LayoutError(f"{label}: cannot be read ({exc.strerror or exc})") from exc
    try:
        with source:
            chunk = source.read(CHUNK)
            # Excel's "Unicode text" export has a UTF-16 byte-order mark.
            encoding = "utf-16" if chunk[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"
            decoder = codecs.getincrementaldecoder(encoding)()
            try:
                while chunk:
                    decoder.decode(chunk)
                    chunk = source.read(CHUNK)
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                if encoding == "utf-16":
                    raise LayoutError(f"{label}: has a UTF-16 byte-order mark but is not UTF-16 "
                                      f"({exc})") from exc
                # Older Windows exports are Latin-1/cp1252; latin-1 decodes any byte, losing no row.
                return "latin-1"
    except (OSError, EOFError, zlib.error) as exc:  # cut short or corrupt (BadGzipFile is an OSError)
        raise LayoutError(f"{label}: starts like gzip but cannot be decompressed ({exc})") from exc
    return encoding


class _Lines:
    """The lines of a text stream for :func:`csv.reader`, refused past :data:`MAX_LINE` characters
    (a line, or the lines of one row: quoted fields can hold line breaks), keeping those of the row
    being read so that a dead letter carries its text as in the file (``keep``). Whoever reads the
    rows says when each ends (:meth:`row_text`, :meth:`rows`)."""

    def __init__(self, stream: IO[str], label: str, keep: bool = True) -> None:
        self.stream, self.label, self.keep, self.number = stream, label, keep, 0
        self.taken, self.row_lines, self.row_size = list[str](), 0, 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.stream.readline(MAX_LINE + 1)
        if not line:
            raise StopIteration
        self.number += 1
        self.row_lines += 1
        self.row_size += len(line)
        if len(line) > MAX_LINE:
            raise LayoutError(f"{self.label}:{self.number}: a line of more than {MAX_LINE:,} characters "
                              "is not a row of bars")
        if self.row_size > MAX_LINE:
            raise LayoutError(f"{self.label}:{self.number - self.row_lines + 1}: a row of more than "
                              f"{MAX_LINE:,} characters (over {self.row_lines:,} lines) is not a row of bars")
        if self.keep:
            self.taken.append(line)
        return line

    def row_text(self) -> str:
        """The text of the lines taken since the last call, without the final line break."""
        text = "".join(self.taken).rstrip("\r\n")
        self.taken.clear()
        self.row_lines = self.row_size = 0
        return text

    def rows(self, reader: Iterator[list[str]]) -> Iterator[list[str]]:
        """The rows of ``reader`` (a :func:`csv.reader` of these lines), each row's end said."""
        for row in reader:
            self.row_text()
            yield row


def _open_text(path: Path, encoding: str) -> IO[str]:
    # newline="": the csv module sees line breaks inside quoted fields as they are in the file.
    return io.TextIOWrapper(_binary(path), encoding=encoding, newline="")


def _delimiter(header_line: str) -> str:
    return max(DELIMITERS, key=header_line.count)


def _read_file(path: Path, label: str, result: ReadResult, checker: RowChecker, *, ticker: str | None,
               columns: Mapping[str, str] | None, max_rows: int | None) -> None:
    encoding = _encoding(path, label)
    with _open_text(path, encoding) as stream:
        lines = _Lines(stream, label)
        first = next(lines, "")
        if not first.strip():
            raise LayoutError(f"{label}: the file is empty or starts with a blank line; it needs a header "
                              "row")
        delimiter = _delimiter(first)
        reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
        try:
            header = next(reader)
            if len(header) > MAX_COLUMNS:
                raise LayoutError(f"{label}: the header has {len(header):,} columns, more than "
                                  f"{MAX_COLUMNS:,}")
            layout = detect_layout(header, file_name=label, ticker=ticker, columns=columns)
            lines.row_text()
            with _open_text(path, encoding) as again:  # a second reader for the dates, when needed
                date_lines = _Lines(again, label, keep=False)  # no dead letters from this reader
                dates = csv.reader(date_lines, delimiter=delimiter)
                try:
                    checker.day_first = _day_first(itertools.islice(date_lines.rows(dates), 1, None),
                                                   layout.date)
                except csv.Error as exc:
                    raise _not_csv(label, dates.line_num, exc) from exc
            _read_rows(reader, lines, label, layout, result, checker, max_rows)
        except csv.Error as exc:  # e.g. a field over the csv module's size limit: the file is not a table
            raise _not_csv(label, reader.line_num, exc) from exc


def _not_csv(label: str, line: int, error: csv.Error) -> LayoutError:
    return LayoutError(f"{label}:{line}: cannot be read as CSV: {error}")


def _day_first(rows: Iterator[list[str]], column: int) -> bool:
    """Whether the slash dates of a file's data ``rows`` are day-first. Only files whose first date
    has a slash are read to the end for it (ISO and ``YYYYMMDD`` files, the big ones, are not)."""
    first = next((row for row in rows if row), None)
    if first is None or len(first) <= column or "/" not in first[column]:
        return False
    return is_day_first(itertools.chain([first[column]], (row[column] for row in rows if len(row) > column)))


def _read_rows(reader: Iterator[list[str]], lines: _Lines, label: str, layout: Layout,
               result: ReadResult, checker: RowChecker, max_rows: int | None) -> None:
    d, o, h, lo, c, v = layout.date, layout.open, layout.high, layout.low, layout.close, layout.volume
    adj, tc, width = layout.adj_close, layout.ticker_column, layout.width
    constant_ticker = layout.ticker or ""
    bars, check = result.bars, checker.check
    end = reader.line_num  # type: ignore[attr-defined]  # where the header ended
    for row in reader:
        start, end = end + 1, reader.line_num  # type: ignore[attr-defined]  # csv's reader has it
        raw = lines.row_text()
        if not row:
            continue
        result.rows_read += 1
        if max_rows is not None and result.rows_read > max_rows:
            raise TooManyRows(f"{label}:{start}: more than {max_rows:,} rows")
        if len(row) < width:
            row = row + [""] * (width - len(row))  # a short row: its missing cells are empty fields
        ticker = constant_ticker if tc is None else row[tc]
        source = f"{label}:{start}"
        try:
            bar = check(ticker, row[d], row[o], row[h], row[lo], row[c], row[v],
                        "" if adj is None else row[adj], source)
        except BarError as error:
            result.reject(DeadLetter.rejected(error, raw=raw, source=source, ticker=ticker.strip() or None))
            continue
        if bar is None:
            result.filtered += 1
        else:
            bars.append(bar)


def read_csv_bars(paths: Sequence[str | Path], *, ticker: str | None = None,
                  columns: Mapping[str, str] | None = None, tickers: Collection[str] | None = None,
                  start: dt.date | None = None, end: dt.date | None = None, max_rows: int | None = None,
                  keep_dead_letters: int | None = None) -> ReadResult:
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
    max_rows
        Rows the read may hold (blank lines are not rows): one more raises :class:`TooManyRows`.
    keep_dead_letters
        Dead letters kept in ``dead_letters`` (the rest are only counted); default: all.

    The files are read a line at a time; what a read holds beyond its bars and kept dead letters is
    one row, of at most :data:`MAX_LINE` characters (over one line or several).

    Raises
    ------
    LayoutError
        A file whose columns cannot be mapped, that is not CSV or has a header of more than
        :data:`MAX_COLUMNS` columns or a line or row longer than :data:`MAX_LINE`; nothing is returned, so
        nothing half-read is sent.
    TooManyRows
        More than ``max_rows`` rows.
    FileNotFoundError
        A path that does not exist or a directory without CSV files.
    """
    if isinstance(paths, str | Path):
        paths = [paths]  # one path, not a sequence of its characters
    if not paths:
        raise ValueError("no input files given")
    checker = RowChecker(tickers=tickers, start=start, end=end)
    result = ReadResult(keep=keep_dead_letters)
    for path, label in csv_files(paths):
        _read_file(path, label, result, checker, ticker=ticker, columns=columns, max_rows=max_rows)
    result.bars.sort(key=_event_time)
    return result


def _event_time(bar: Bar) -> tuple[dt.date, str]:
    return bar.date, bar.ticker
