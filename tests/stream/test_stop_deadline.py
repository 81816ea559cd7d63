"""The worker's stop deadline: a stop that hangs ends the process anyway, saying where it hung."""

from __future__ import annotations

import subprocess
import sys

from forecaster.settings import Settings
from stream_app import stop_deadline
from stream_app.faust_adapter import ForecasterApp, ForecasterWorker

# A process whose "stop" never ends: its main thread waits forever on an event nobody sets.
HUNG_STOP = """
import logging, threading
from stream_app import stop_deadline
logging.basicConfig()
stop_deadline.arm(0.2)
threading.Event().wait()
"""


def test_a_hung_stop_exits_with_every_threads_stack() -> None:
    done = subprocess.run([sys.executable, "-c", HUNG_STOP], capture_output=True, text=True, timeout=60)
    assert done.returncode == stop_deadline.EXIT_STOP_TIMEOUT
    assert "the worker did not stop within 0.2 s (FORECASTER_STOP_TIMEOUT_S)" in done.stderr
    # faulthandler's dump: the stuck main thread, waiting where the script left it.
    assert "Thread 0x" in done.stderr and 'File "<string>", line 6 in <module>' in done.stderr


def test_a_hung_stop_exits_when_stderr_is_fausts_logger_proxy() -> None:
    # Faust's worker redirects sys.stderr to a logger proxy whose fileno() raises; the dump once
    # raised there and the timer's thread died without exiting (a CI worker hung past 90 s).
    proxy = ("import sys; from mode.utils.logging import FileLogProxy; "
             "sys.stderr = FileLogProxy(logging.getLogger('stderr')); ")
    script = HUNG_STOP.replace("stop_deadline.arm", proxy + "stop_deadline.arm")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == stop_deadline.EXIT_STOP_TIMEOUT, done.stderr
    assert "Thread 0x" in done.stderr


def test_a_process_that_ends_in_time_does_not_wait_for_the_deadline() -> None:
    script = "from stream_app import stop_deadline; stop_deadline.arm(3600)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")


def test_the_app_runs_the_worker_with_the_deadline() -> None:
    app = ForecasterApp(Settings(stop_timeout_s=5.0))
    assert app.conf.Worker is ForecasterWorker
