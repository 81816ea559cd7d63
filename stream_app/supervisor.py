"""Several worker processes of one consumer group on one host, as one command and one metrics target.

``forecaster worker --processes N`` runs a :class:`WorkerPool`: N ``forecaster worker`` processes
(one Faust worker each, so one Python thread each is no longer the host's limit), each with a local
state directory of its own (``worker/process-<i>``: RocksDB locks its directory) and a private
metrics port, which the pool's endpoint serves as one (:mod:`stream_app.pooled_metrics`). The pool

* restarts a process that dies, after 1 s, doubling while it keeps dying young (:class:`RestartBackoff`);
* stops every process cleanly on SIGTERM or Ctrl-C (SIGTERM to each, which finishes its batch), and
  exits 0 when all of them did;
* takes its processes with it if it is killed: each process reads its standard input, a pipe from
  the pool, and stops when the pipe closes (:func:`stop_when_stdin_closes`).

Each process is started in a session of its own, so that a terminal's Ctrl-C reaches the pool only,
which then stops them in order.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from socket import socket
from types import FrameType

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings, to_environ
from stream_app.pooled_metrics import PooledMetricsServer, PoolMetrics

log = logging.getLogger(__name__)

#: How often the pool looks for processes that died, seconds.
POLL_S = 0.5
#: How long the processes get to stop on SIGTERM before they are killed, seconds.
STOP_TIMEOUT_S = 60.0


def pool_size(processes: int) -> int:
    """The number of worker processes to run: ``processes``, or one per CPU this process may use for 0.

    >>> pool_size(3)
    3
    >>> pool_size(0) >= 1
    True
    >>> pool_size(-1)
    Traceback (most recent call last):
    ...
    ValueError: worker processes must be 0 (one per CPU) or more, got -1
    """
    if processes < 0:
        raise ValueError(f"worker processes must be 0 (one per CPU) or more, got {processes}")
    if processes:
        return processes
    if hasattr(os, "sched_getaffinity"):  # Linux: the CPUs this process may run on (containers, taskset)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class RestartBackoff:
    """Seconds to wait before restarting a process that exited after running ``ran_s`` seconds.

    1 s, doubling for each exit within ``stable_s`` of the start, up to ``max_s``: a process that
    cannot start (a broker gone for good) is retried without a busy loop; one that ran ``stable_s``
    starts the count afresh.

    >>> backoff = RestartBackoff()
    >>> [backoff.after_exit(ran_s=2.0) for _ in range(8)]
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    >>> backoff.after_exit(ran_s=300.0)
    1.0
    """

    first_s: float = 1.0
    max_s: float = 60.0
    stable_s: float = 60.0
    _young_exits: int = 0

    def after_exit(self, ran_s: float) -> float:
        self._young_exits = self._young_exits + 1 if ran_s < self.stable_s else 1
        return min(self.first_s * 2 ** (self._young_exits - 1), self.max_s)


@dataclass
class _Process:
    """One place in the pool, and the process that holds it now (None between a death and its restart)."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    metrics_url: str | None = None
    started: float = 0.0
    restart_at: float = 0.0
    backoff: RestartBackoff = field(default_factory=RestartBackoff)

    @property
    def name(self) -> str:
        return str(self.index)


#: One process of a pool: ``forecaster worker``, its settings from the environment.
WORKER_COMMAND = [sys.executable, "-m", "forecaster.cli", "worker", "--supervised"]


class WorkerPool:
    """``processes`` worker processes for ``settings``, logging at ``loglevel`` (``forecaster -l``)."""

    def __init__(self, settings: Settings, processes: int, loglevel: str) -> None:
        self.settings = settings
        self.loglevel = loglevel
        self.places = [_Process(i) for i in range(processes)]
        self.metrics = PoolMetrics(processes)
        self._stop = threading.Event()

    def run(self, metrics_socket: socket) -> int:
        """Run until SIGTERM or SIGINT; 0 when every process then stopped cleanly."""
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        server = PooledMetricsServer(metrics_socket, self.metrics,
                                     lambda: {p.name: p.metrics_url for p in self.places})
        server.serve_in_background()
        try:
            for place in self.places:
                self._start(place)
            log.info("started %d worker processes; metrics of all on %s:%d", len(self.places),
                     self.settings.metrics_host, self.settings.metrics_port)
            while not self._stop.wait(POLL_S):
                self._look_after(time.monotonic())
            return self._stop_all()
        finally:
            server.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping the worker processes", signal.Signals(signum).name)
        self._stop.set()

    def _settings_of(self, place: _Process, metrics_port: int) -> Settings:
        return self.settings.replace(worker_processes=1, metrics_host="127.0.0.1", metrics_port=metrics_port,
                                     worker_datadir=str(self.settings.worker_dir / f"process-{place.index}"))

    def _start(self, place: _Process) -> None:
        port = free_port()
        env = {**os.environ, **to_environ(self._settings_of(place, port))}
        place.process = subprocess.Popen([*WORKER_COMMAND, "-l", self.loglevel], env=env,
                                         stdin=subprocess.PIPE, start_new_session=True)
        place.metrics_url = f"http://127.0.0.1:{port}/metrics"
        place.started = time.monotonic()
        log.info("worker process %s started (pid %d)", place.name, place.process.pid)

    def _look_after(self, now: float) -> None:
        for place in self.places:
            if place.process is not None and (code := place.process.poll()) is not None:
                delay = place.backoff.after_exit(now - place.started)
                log.warning("worker process %s (pid %d) exited with %d; restarting it in %.0f s",
                            place.name, place.process.pid, code, delay)
                self._release(place.process)
                place.process, place.metrics_url, place.restart_at = None, None, now + delay
            if place.process is None and now >= place.restart_at:
                self._start(place)
                self.metrics.restarts.labels(place.name).inc()

    def _stop_all(self) -> int:
        running = [p.process for p in self.places if p.process is not None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        codes = []
        for process in running:
            try:
                codes.append(process.wait(timeout=max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                log.error("worker process pid %d did not stop within %.0f s; killing it", process.pid,
                          STOP_TIMEOUT_S)
                process.kill()
                codes.append(process.wait())
            self._release(process)
        failed = [code for code in codes if code != 0]
        if failed:
            log.error("%d of %d worker processes did not stop cleanly (exit codes %s)", len(failed),
                      len(codes), failed)
        return 1 if failed else 0

    @staticmethod
    def _release(process: subprocess.Popen[bytes]) -> None:
        if process.stdin is not None:
            process.stdin.close()


def stop_when_stdin_closes() -> None:
    """In a pool's worker process: SIGTERM this process when its standard input (the pool's pipe)
    closes, which happens when the pool ends in any way, ``kill -9`` included."""

    def watch() -> None:
        # The raw descriptor: a daemon thread blocked in sys.stdin's buffered reader holds its lock,
        # and the interpreter aborts at exit when it cannot take it.
        try:
            while os.read(0, 1024):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="pool-watch", daemon=True).start()
