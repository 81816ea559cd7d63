"""What the system shows of text it was given: credentials hidden, control characters escaped.

A URI may carry a user and a password (``http://user:secret@host``, ``postgresql://user:secret@db``),
MLflow repeats the URI it was given in its own error messages, and kafka-python logs its whole
configuration, SASL password included. :func:`redact` replaces by ``***`` the user information of
every URI in a text, the value of every ``password``, ``secret`` or ``token`` key, and each secret the
process was configured with (:func:`hide`, which :func:`forecaster.settings.load` calls): a password
that no pattern can tell from the text around it (a ``/`` or a blank in it) still does not show.
:func:`redact_logs` makes every log record of the process pass through it, whichever library wrote
the record. :func:`printable` makes a text from outside (a file's header, a request's field) safe to
echo: cut, with its ANSI escapes and other control characters written as escapes. A text is redacted
before it is cut, never after: a cut through a URI leaves no ``@`` to find its password by.

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
>>> redact("'http://bob:PROM/SECRET@prometheus:9090' and http://host:8080/x@y")
"'http://***@prometheus:9090' and http://host:8080/x@y"
>>> redact("{'sasl_plain_username': 'app', 'sasl_plain_password': 'pw', 'ssl_password': None} password=pw")
"{'sasl_plain_username': 'app', 'sasl_plain_password': '***', 'ssl_password': None} password=***"
>>> hide("sp ace-secret"); redact("a login with sp ace-secret was refused")
'a login with *** was refused'
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: ``scheme://userinfo@``: the user information of a URI's authority (RFC 3986), up to its last ``@``
#: (an unescaped ``@`` in a password stays hidden); the authority ends at the first ``/``, ``?`` or
#: ``#``, so an ``@`` in a path or an alias (``models:/name@champion``) is left alone.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]{0,31}://)[^/?#\s]+@")
#: ``scheme://user:pass/word@host``: a password holding ``/``, ``?`` or ``#``, which end the authority
#: above. It runs to the first ``@`` after which a host ends the authority; a port and what follows
#: it (``http://host:8080/x@y``, ``"http://host:5000","models:/m@a"``), quotes, commas and brackets
#: are no password (a URI among others in JSON, an IPv6 host). Each part is bounded (256 characters: a longer
#: password only :func:`hide` finds), so that a text of many ``a://b:`` costs linear time, not
#: quadratic: logs carry request paths.
_SPLIT_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]{0,31}://)[^/?#\s@:\[\]\"',;]{0,256}:"
                             r"(?!\d{0,5}(?:[^\w@]|$))[^\s\[\]\"',;(){}<>]{0,256}?@"
                             r"(?=[^/?#\s@]{0,256}(?:[/?#\s]|$))")
#: ``'...password': '<value>'`` (a Python or JSON mapping) and ``...password=<value>`` (a properties
#: file, a JAAS line, a command line): the value of a key that ends in a password, a secret or a token
#: (or its key), such as kafka-python's ``sasl_plain_password`` in the configuration it logs; not
#: ``max_tokens=10``, nor an empty value.
_SECRET_WORDS = r"(?:password|passwd|secret|token)(?:[_.-]?key)?"
_SECRET_KEY = rf"[\w.-]{{0,64}}?{_SECRET_WORDS}"
_KEYED = re.compile(rf"""(?P<key>(?P<q>['"]){_SECRET_KEY}(?P=q)\s{{0,16}}:\s{{0,16}}b?|\b{_SECRET_KEY}=)"""
                    r"""(?P<value>'(?:[^'\\\n]|\\.){1,1024}'|"(?:[^"\\\n]|\\.){1,1024}"|(?<==)[^\s'",;&)}\]]{1,1024})""",
                    re.IGNORECASE)
#: Whether a text may hold such a key at all: one linear pass, before the pattern's slower one.
_SECRET_WORD = re.compile(_SECRET_WORDS, re.IGNORECASE)

SHOWN = "***"
#: The shortest secret :func:`hide` takes: a shorter one would hide words and numbers of ordinary
#: output (a password ``kafka`` in ``kafka:9092``). Where a library writes a short one, as a key's
#: value or in a URI, the patterns above still find it.
MIN_SECRET = 8
#: The secrets :func:`hide` was given, one alternation, the longest first (None: none yet).
_hidden: re.Pattern[str] | None = None
_secrets: frozenset[str] = frozenset()


def hide(*secrets: str) -> None:
    """Make :func:`redact` hide each of ``secrets`` wherever it appears, from now on and in the whole
    process; empty ones and ones shorter than :data:`MIN_SECRET` characters are ignored.

    >>> hide("", "kafka", "tok-9f3e-77"); redact("Bearer tok-9f3e-77, kafka:9092")
    'Bearer ***, kafka:9092'
    """
    global _hidden, _secrets
    known = _secrets | {s for s in secrets if len(s) >= MIN_SECRET}
    if known != _secrets:
        # The longest first: one secret holding another is hidden whole, not around the shorter one.
        _hidden = re.compile("|".join(re.escape(s) for s in sorted(known, key=len, reverse=True)))
        _secrets = known


def uri_password(uri: str) -> str:
    """The password in ``uri``'s user information (all between ``://`` and its last ``@``): what follows
    its first ``:``, '' when none, for :func:`hide`. Whatever a password holds (``/``, ``#``, blanks),
    it lies in there; the user name is no secret, and may be a word of ordinary output.

    >>> uri_password("http://alice:pa/ss#1@mlflow:5000"), uri_password("postgresql://mlflow@db/mlflow")
    ('pa/ss#1', '')
    """
    _, sep, rest = uri.partition("://")
    return rest.rpartition("@")[0].partition(":")[2] if sep else ""


def redact(text: str) -> str:
    """``text`` with every secret in it replaced: the secrets given to :func:`hide`, the user
    information (user name and password) of every URI, and the value of every password-like key."""
    hidden = _hidden
    if hidden is not None:
        text = hidden.sub(SHOWN, text)
    text = _USERINFO.sub(rf"\g<scheme>{SHOWN}@", text)
    text = _SPLIT_USERINFO.sub(rf"\g<scheme>{SHOWN}@", text)
    return _KEYED.sub(_hide_value, text) if _SECRET_WORD.search(text) else text


def _hide_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "'\"" else ""
    return f"{match['key']}{quote}{SHOWN}{quote}"


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
