"""What the system shows of text it was given: credentials hidden, control characters escaped.

A URI may carry a user and a password (``http://user:secret@host``, ``postgresql://user:secret@db``),
and MLflow repeats the URI it was given in its own error messages. :func:`redact` replaces the user
information of every URI in a text by ``***``; :func:`redact_logs` makes every log record of the
process pass through it, whichever library wrote the record. :func:`printable` makes a text from
outside (a file's header, a request's field) safe to echo: cut, with its ANSI escapes and other
control characters written as escapes.

Examples
--------
>>> redact("API request to http://alice:s3cret@mlflow:5000/api/2.0 failed")
'API request to http://***@mlflow:5000/api/2.0 failed'
>>> redact("postgresql+psycopg2://bob:p%40ss@db/mlflow and sqlite:////home/me/mlflow.db")
'postgresql+psycopg2://***@db/mlflow and sqlite:////home/me/mlflow.db'
>>> print(printable(chr(27) + "[2Jrows" + chr(10), 40), printable("x" * 12, 5))
\\x1b[2Jrows\\n xxxxx… (12 characters)
>>> redact("models:/next-close@champion, http://user:p@ss@host/x?to=a@b")
'models:/next-close@champion, http://***@host/x?to=a@b'
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: ``scheme://userinfo@``: the user information of a URI's authority (RFC 3986), up to its last ``@``
#: (an unescaped ``@`` in a password stays hidden); the authority ends at the first ``/``, ``?`` or
#: ``#``, so an ``@`` in a path or an alias (``models:/name@champion``) is left alone.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]+@")

SHOWN = "***"


def redact(text: str) -> str:
    """``text`` with the user information (user name and password) of every URI in it replaced."""
    return _USERINFO.sub(rf"\g<scheme>{SHOWN}@", text)


def redact_logs() -> None:
    """Make every log record made from now on show :func:`redact`'s text, its traceback included.

    A log record factory, unlike a filter or a handler, sees the records of every library whatever
    handlers they reach (Faust and uvicorn install their own). Installing it twice changes nothing.
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts", False):
        return

    def redacting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        message = record.getMessage()
        shown = redact(message)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_info and record.exc_info[0] is not None:
            # Formatters use exc_text when it is set: the traceback is formatted here once, redacted.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    redacting.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting)


def printable(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters with its control characters (ANSI escapes, line breaks)
    written as escapes: safe to echo in an answer, a log line or a terminal."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[:limit])
    return shown if len(text) <= limit else f"{shown}… ({len(text):,} characters)"
