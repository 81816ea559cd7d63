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


def test_a_process_that_ends_in_time_does_not_wait_for_the_deadline() -> None:
    script = "from stream_app import stop_deadline; stop_deadline.arm(3600)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")


def test_the_app_runs_the_worker_with_the_deadline() -> None:
    app = ForecasterApp(Settings(stop_timeout_s=5.0))
    assert app.conf.Worker is ForecasterWorker
