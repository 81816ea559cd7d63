"""A deadline on the worker's stop: past it, the process says where it hung and exits anyway.

Faust's stop waits for each of its services in turn, and one that never finishes would hold the
process until an orchestrator kills it, with nothing on record of where it hung. Exiting is safe:
the worker's per-partition positions make the restart exact, as after a kill -9
(docs/reliability.md).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: The exit status of a worker that did not stop in time (EX_TEMPFAIL: a restart is the cure).
EXIT_STOP_TIMEOUT = 75

STDERR_FD = 2


def arm(timeout_s: float, exit_now: Callable[[int], object] = os._exit) -> threading.Timer:
    """Exit with :data:`EXIT_STOP_TIMEOUT` unless the process ends within ``timeout_s`` seconds.

    The timer's thread is a daemon: a process that stops in time ends without waiting for it. When it
    fires it logs why, dumps every thread's stack to the process's stderr (where the stop hung) and
    calls ``exit_now``, :func:`os._exit` by default, since the event loop that should have ended
    the process is the one stuck.
    """
    timer = threading.Timer(timeout_s, _expire, args=(timeout_s, exit_now))
    timer.daemon = True
    timer.name = "stop-deadline"
    timer.start()
    return timer


def _expire(timeout_s: float, exit_now: Callable[[int], object]) -> None:
    try:
        log.critical("the worker did not stop within %g s (FORECASTER_STOP_TIMEOUT_S); exiting now, "
                     "its positions make the restart exact. Where each thread was:", timeout_s)
        # To the process's own stderr: Faust's worker replaces sys.stderr with a logger proxy that has
        # no file descriptor, and faulthandler needs one.
        faulthandler.dump_traceback(file=STDERR_FD, all_threads=True)
        logging.shutdown()
    finally:  # whatever the dump does, the process ends
        exit_now(EXIT_STOP_TIMEOUT)
