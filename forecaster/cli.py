"""``forecaster``: the one command line in front of the whole system.

Each subcommand is a module of :mod:`forecaster.commands` with a ``register(subparsers)``
function that adds its parser and sets ``run(args, settings) -> int``. Modules import their heavy
dependencies (Kafka clients, TensorFlow, MLflow) inside ``run``, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import pkgutil
import select
import signal
import sys
import traceback

from forecaster import commands
from forecaster import settings as settings_module
from forecaster.redaction import printable, redact, redact_logs
from forecaster.startup import explain


def version() -> str:
    """The installed distribution's version (a clone installed with ``make`` is installed too)."""
    try:
        return importlib.metadata.version("stream-forecaster")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forecaster",
        description="Event-driven streaming forecaster for daily stock bars.",
        epilog="Settings come from FORECASTER_* environment variables; see `forecaster settings`.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    _add_loglevel(parser, "warn")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    _loglevel_everywhere(sub)
    return parser


def _add_loglevel(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("-l", "--loglevel", default=default, choices=["debug", "info", "warn", "error"],
                        help="log level (default: warn)")


def _loglevel_everywhere(sub: argparse._SubParsersAction) -> None:
    """``-l`` after the subcommand too (``forecaster worker -l info``, as ``faust ... worker -l info``);
    there it leaves the main parser's value alone unless given."""
    for parser in sub.choices.values():
        _add_loglevel(parser, argparse.SUPPRESS)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _loglevel_everywhere(action)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {"warn": logging.WARNING}.get(args.loglevel, getattr(logging, args.loglevel.upper()))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact_logs()
    if args.loglevel == "warn":
        # kafka-python logs every failed connection attempt; the commands say what failed in one
        # line (GET /health reports the broker). -l info shows the attempts.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    settings = None
    try:
        settings = settings_module.load()
        code = int(args.run(args, settings) or 0)
        sys.stdout.flush()  # here, not at exit: a reader gone is then told apart like any broken pipe
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and _reader_left():
            # `forecaster settings | head`: the reader had what it wanted, as with any tool of a pipeline.
            return 128 + signal.SIGPIPE
        # Expected failures (bad input or settings, missing Java, a port taken, an unreachable
        # broker) end with one clear line, not a traceback; -l debug shows the traceback too.
        bootstrap = getattr(args, "bootstrap", None) or (settings.bootstrap if settings else None)
        message = explain(exc, bootstrap, settings)
        if message is None:
            # A bug: its traceback, with the credentials of any URI in it (MLflow quotes its own) hidden.
            print(redact(traceback.format_exc()), end="", file=sys.stderr)
            return 1
        logging.getLogger("forecaster").debug("failed", exc_info=True)
        # The message may quote the input (a file's header): escaped and cut, it stays one line; redacted
        # first, as a cut through a URI leaves no "@" to find its password by.
        print(f"forecaster {args.command}: error: {printable(redact(message), 1000)}", file=sys.stderr)
        return 2


def _reader_left() -> bool:
    """Whether standard output is a pipe whose reader has gone, not some socket of the command's
    (then pointed at /dev/null, so that Python's own flush at exit does not fail on it again)."""
    try:
        out = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object with no descriptor
        return False
    if hasattr(select, "poll"):  # the write end of a pipe without a reader polls as an error
        poller = select.poll()
        poller.register(out, select.POLLOUT)
        if not any(events & select.POLLERR for _, events in poller.poll(0)):
            return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, out)
    os.close(devnull)
    return True


if __name__ == "__main__":
    sys.exit(main())
