"""A forecast request's history, read into bars and dead letters, or refused with the reason.

A CSV upload goes through :func:`producers.readers.read_csv_bars`, the reader of ``forecaster replay``
and ``forecaster backtest``, from a temporary file that keeps the upload's name (a single-ticker file
takes its ticker from it). A gzipped upload is inflated into that file first, chunk by chunk, and
refused (413) once it passes the size limit: the reader would inflate it whole in memory.
JSON bars go through :meth:`models.core.bar.Bar.from_dict`, the stream worker's validation of a
message, one at a time (:func:`read_json_body`). Either way a row that validation rejects becomes
a dead letter with its reason and source, and a request whose input cannot be read at all raises
:class:`InputError`, which the app answers with a 4xx.

Examples
--------
>>> upload_name("../../etc/passwd"), upload_name(r"C:\\data\\aapl.csv"), upload_name("..")
('passwd', 'aapl.csv', 'upload.csv')
>>> long = upload_name("a" * 300 + ".csv.gz")
>>> len(long.encode()), long[-9:]
(200, 'aa.csv.gz')
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
import shutil
import tempfile
import zlib
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, BinaryIO

import orjson

from forecaster.redaction import printable
from models.core.bar import Bar, BarError
from models.core.deadletter import DeadLetter
from producers.layouts import ticker_from_file_name
from producers.readers import LayoutError, ReadResult, TooManyRows, read_csv_bars


class InputError(ValueError):
    """Input that cannot be read at all, or of which no bar could be forecast; ``status`` is the HTTP
    status of the answer.

    ``details`` (e.g. the rejected rows) join the message in the answer's ``detail`` object.
    """

    def __init__(self, message: str, status: int = 422, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.details = details

    @property
    def detail(self) -> dict[str, Any]:
        """The answer's ``detail``: the message (printable, at most 1,000 characters) and the details."""
        return {"message": printable(str(self), 1000), **self.details}


def upload_name(name: str | None) -> str:
    """The upload's base name, safe as a file name: no folders, no leading dots, at most
    :data:`MAX_NAME_BYTES` bytes (a longer name loses the end of its stem and keeps its suffixes)."""
    base = re.sub(r"[^\w.-]", "_", PureWindowsPath(name or "").name).lstrip(".") or "upload.csv"
    if len(base.encode()) <= MAX_NAME_BYTES:
        return base
    suffix = "".join(PurePath(base).suffixes[-2:])[-16:]
    kept = MAX_NAME_BYTES - len(suffix.encode())
    return base[: len(base) - len(suffix)].encode()[:kept].decode(errors="ignore") + suffix


#: An upload's file name, at most: file systems take 255 bytes, and inflating adds a prefix.
MAX_NAME_BYTES = 200
#: Gzip layers an upload may have: a .gz file, gzipped once more on its way (each layer is inflated
#: whole, up to the size limit, before the next is looked at).
MAX_GZIP_LAYERS = 2


#: Bytes read or inflated at a time: what an upload costs in memory beyond its bars.
CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


def too_large(what: str, limit: int) -> InputError:
    """The 413 of an input over ``FORECASTER_API_MAX_BYTES``."""
    return InputError(f"{what} more than FORECASTER_API_MAX_BYTES ({limit:,} bytes): send a shorter "
                      "history, choose some tickers, or raise the setting", status=413)


def read_upload(name: str | None, source: BinaryIO, *, limit: int, ticker: str | None = None,
                columns: Mapping[str, str] | None = None, tickers: Collection[str] | None = None,
                max_rows: int | None = None, keep: int | None = None) -> ReadResult:
    """The bars and dead letters of an uploaded CSV file (plain or gzipped); ``tickers`` selects.

    ``source`` is read in chunks; a gzipped file (also one gzipped twice, not more) is refused with a 413 once
    its inflated size passes ``limit`` bytes, and a file of more than ``max_rows`` rows at the next
    one. The first ``keep`` dead letters are kept, all are counted.
    """
    file_name = upload_name(name)
    if ticker is None and name:
        # A file without a ticker column is the ticker its name says, as `forecaster backtest` reads
        # it: the name made safe to save is not ("^GSPC.csv" is saved as "_GSPC.csv").
        ticker = ticker_from_file_name(PureWindowsPath(name).name) or None
    with tempfile.TemporaryDirectory(prefix="forecaster-upload-") as folder:
        path = Path(folder) / file_name
        with path.open("wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
        with path.open("rb") as handle:
            head = handle.read(2)
        for _ in range(MAX_GZIP_LAYERS):
            if head == GZIP_MAGIC:
                head = _inflate(path, path.with_name(f"inflated-{file_name}"), limit, file_name)
        if head == GZIP_MAGIC:
            raise InputError(f"{file_name} is gzipped more than {MAX_GZIP_LAYERS} times over: send the CSV, "
                             "plain or gzipped once")
        if not _has_text(path):
            raise InputError(f"{file_name}: the file is empty")
        try:
            return read_csv_bars([path], ticker=ticker, columns=columns, tickers=tickers, max_rows=max_rows,
                                 keep_dead_letters=keep)
        except LayoutError as error:  # bytes that are not CSV
            raise InputError(str(error)) from None
        except TooManyRows as error:
            raise InputError(f"{error} (FORECASTER_API_MAX_ROWS): send a shorter history",
                             status=413) from None


def _inflate(path: Path, scratch: Path, limit: int, label: str) -> bytes:
    """Replace the gzip file ``path`` by its content, refused past ``limit`` bytes; its first 2 bytes.

    >>> import gzip, tempfile
    >>> path = Path(tempfile.mkdtemp()) / "rows.csv.gz"
    >>> _ = path.write_bytes(gzip.compress(b"date,close\\n" * 1000) * 2)  # two gzip members
    >>> _inflate(path, path.with_suffix(".tmp"), 22_000, "rows.csv.gz"), path.stat().st_size
    (b'da', 22000)
    >>> _ = path.write_bytes(gzip.compress(b"date,close\\n" * 1000))
    >>> _inflate(path, path.with_suffix(".tmp"), 5_000, "rows.csv.gz")
    Traceback (most recent call last):
    ...
    api.inputs.InputError: rows.csv.gz inflates to more than FORECASTER_API_MAX_BYTES (5,000 bytes): ...
    """
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip header, any window
    written = 0
    with path.open("rb") as source, scratch.open("wb") as out:
        try:
            pending = source.read(CHUNK)
            while pending:
                # At most CHUNK bytes out per call, however much the input inflates.
                data = inflater.decompress(pending, CHUNK)
                written += len(data)
                if written > limit:
                    raise too_large(f"{label} inflates to", limit)
                out.write(data)
                if inflater.eof:  # the end of a gzip member; another may follow, as gzip allows
                    pending = inflater.unused_data or source.read(CHUNK)
                    inflater = zlib.decompressobj(wbits=47) if pending else inflater
                else:
                    pending = inflater.unconsumed_tail or source.read(CHUNK)
            data = inflater.flush()  # what zlib still holds: at most its window
            if written + len(data) > limit:
                raise too_large(f"{label} inflates to", limit)
            out.write(data)
            if not inflater.eof:
                raise zlib.error("the stream is cut short")
        except zlib.error as exc:
            raise InputError(f"{label}: starts like gzip but cannot be decompressed ({exc})") from None
    scratch.replace(path)
    with path.open("rb") as handle:
        return handle.read(2)


def _has_text(path: Path) -> bool:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            if chunk.strip():
                return True
    return False


_SPACE = re.compile(rb"[ \t\n\r]*+")
_STRING = rb'"(?:[^"\\]++|\\.)*+"'
# A bar is an object of scalars: an element is matched (possessively, so in linear time and without
# a backtracking stack) before it is parsed, so no element can unfold into a deep or wide object graph.
_FLAT_OBJECT = re.compile(rb'\{(?:[^{}\[\]"]++|' + _STRING + rb")*+\}")
_SCALAR = re.compile(_STRING + rb'|[^ \t\n\r,\[\]{}"]++')
_KEY = re.compile(_STRING)
#: Bytes one JSON bar may take: a bar has eight short fields.
MAX_BAR_BYTES = 64 * 1024


class _JsonShape(Exception):
    """Where and why a JSON body is not ``{"bars": [...]}``."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg


def read_json_body(body: bytes | bytearray, *, tickers: Collection[str] | None = None,
                   max_rows: int | None = None, keep: int | None = None) -> ReadResult:
    """The bars and dead letters of a JSON body ``{"bars": [...]}``; ``bars[i]`` is the source of the i-th.

    The body is read one element at a time, each parsed on its own and dropped once validated, so
    what the read holds beyond the body is its bars and ``keep`` dead letters. With ``tickers``,
    objects of other tickers are counted as filtered, as the CSV reader does.

    Raises
    ------
    InputError
        A body that is not ``{"bars": [...]}`` with at least one element (422, with the location),
        or more than ``max_rows`` elements (413).

    Examples
    --------
    >>> bar = b'{"ticker": "ACME", "date": "2024-01-05", "open": 10, "high": 11, "low": 9, "close": 10, '
    >>> bar += b'"volume": 9}'
    >>> result = read_json_body(b'{"bars": [' + bar + b", " + bar + b", 7]}")
    >>> [b.source for b in result.bars], [(d.reason, d.source) for d in result.dead_letters]
    (['bars[0]'], [('duplicate', 'bars[1]'), ('not_json', 'bars[2]')])
    >>> read_json_body(b'{"bars": [[{}]]}')
    Traceback (most recent call last):
    ...
    api.inputs.InputError: the JSON body is not {"bars": [...]} with at least one bar
    """
    result = ReadResult(keep=keep)
    accepted: dict[tuple[str, dt.date], str] = {}
    selected = None if tickers is None else set(tickers)
    try:
        for index, record in enumerate(_json_bars(body)):
            if max_rows is not None and index >= max_rows:
                raise InputError(f"bars[{index}]: the body holds more than FORECASTER_API_MAX_ROWS "
                                 f"({max_rows:,}) bars; send a shorter history", status=413)
            result.rows_read += 1
            _add_record(result, accepted, selected, record, f"bars[{index}]")
    except _JsonShape as error:
        raise InputError("the JSON body is not {\"bars\": [...]} with at least one bar",
                         errors=[{"loc": error.loc, "msg": error.msg}]) from None
    result.bars.sort(key=lambda bar: (bar.date, bar.ticker))
    return result


def _json_bars(body: bytes | bytearray) -> Iterator[Any]:
    """The elements of ``body``'s ``bars`` array, parsed one at a time; :class:`_JsonShape` when the
    body is not ``{"bars": [...]}`` with at least one element of at most :data:`MAX_BAR_BYTES`.
    A leading UTF-8 byte order mark is skipped, as Python's ``json.loads`` skips it: Windows tools
    write one (PowerShell 5 with ``-Encoding utf8``, Notepad before Windows 10 1903)."""
    start = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    at = _expect(body, start, b"{", [], "the body is not a JSON object")
    key = _KEY.match(body, at, at + MAX_BAR_BYTES)
    if key is None:
        raise _JsonShape(["bars"], "field required")
    if orjson.loads(key[0]) != "bars":
        raise _JsonShape(["bars"], f"field required; found {printable(orjson.loads(key[0]), 40)!r} first, "
                         "and bars is the only field read")
    at = _expect(body, key.end(), b":", [], "a field name without a value")
    at = _expect(body, at, b"[", ["bars"], "bars is not an array")
    index = 0
    while True:
        at = _skip(body, at)
        if at == len(body):
            raise _JsonShape([], "the body ends early")
        if index == 0 and body[at:at + 1] == b"]":
            raise _JsonShape(["bars"], "bars holds no bar; send at least one")
        # Matched within MAX_BAR_BYTES: the parsing thread holds the GIL for a bounded time.
        element = (_FLAT_OBJECT if body[at:at + 1] == b"{" else _SCALAR).match(body, at, at + MAX_BAR_BYTES)
        if element is None:
            raise _JsonShape(["bars", index], "not a bar: an element is an object of fields (no nested "
                             f"arrays or objects) or a scalar, of at most {MAX_BAR_BYTES:,} bytes")
        try:
            yield orjson.loads(element[0])
        except orjson.JSONDecodeError as exc:
            raise _JsonShape(["bars", index], f"not JSON: {exc}") from None
        index += 1
        at = _skip(body, element.end())
        if body[at:at + 1] == b"]":
            break
        at = _expect(body, at, b",", ["bars", index], "a , or ] after a bar")
    at = _expect(body, at + 1, b"}", [], "bars is the only field read; the body ends after it")
    if _skip(body, at) != len(body):
        raise _JsonShape([], "text after the JSON object")


def _skip(body: bytes | bytearray, at: int) -> int:
    """The position after the blanks at ``at``, at most :data:`MAX_BAR_BYTES` of them."""
    return _SPACE.match(body, at, at + MAX_BAR_BYTES).end()  # type: ignore[union-attr]  # matches ""


def _expect(body: bytes | bytearray, at: int, token: bytes, loc: list[str | int], msg: str) -> int:
    """The position after ``token``, the next thing in ``body`` after blanks, else :class:`_JsonShape`."""
    at = _skip(body, at)
    if body[at:at + 1] != token:
        raise _JsonShape(loc if at < len(body) else [], msg if at < len(body) else "the body ends early")
    return at + 1


def _add_record(result: ReadResult, accepted: dict[tuple[str, dt.date], str], selected: set[str] | None,
                record: Any, source: str) -> None:
    """Validate one JSON bar into ``result``: a bar, a dead letter or a filtered row."""
    if selected is not None and isinstance(record, Mapping) and record.get("ticker") not in selected:
        result.filtered += 1
        return
    try:
        bar = Bar.from_dict({**record, "source": source} if isinstance(record, Mapping) else record)
        first = accepted.setdefault((bar.ticker, bar.date), source)
        if first != source:
            raise BarError("duplicate", f"{bar.ticker} {bar.date} was already given as {first}")
    except BarError as error:
        ticker = record.get("ticker") if isinstance(record, Mapping) else None
        result.reject(DeadLetter.rejected(error, raw=orjson.dumps(record), source=source,
                                          ticker=ticker.strip() if isinstance(ticker, str) else None))
        return
    result.bars.append(bar)
