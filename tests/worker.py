"""A real ``forecaster worker`` process for tests: started with given settings, stopped by signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings, to_environ

FORECASTER_WORKER = [sys.executable, "-m", "forecaster.cli", "worker"]


class WorkerProcess:
    """``forecaster worker`` (or another ``command``) in a child process, its output in ``log``.

    Use as a context manager; ``stop(signal.SIGKILL)`` simulates a crash.
    """

    def __init__(self, settings: Settings, log: Path, command: list[str] = FORECASTER_WORKER) -> None:
        self.settings = settings.replace(metrics_port=free_port())
        self.log = log
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **to_environ(self.settings), "PYTHONUNBUFFERED": "1"}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command, env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def metrics_url(self) -> str:
        return f"http://{self.settings.metrics_host}:{self.settings.metrics_port}/metrics"

    def metrics(self, timeout_s: float = 120.0) -> str:
        """The worker's /metrics page, polling until it serves one."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.assert_alive()
            try:
                with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                    return response.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def assert_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the worker exited with {self.process.returncode}:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                name = signal.Signals(sig).name
                raise AssertionError(f"the worker ignored {name}:\n{self.output()}") from None
        return self.process.returncode

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop(signal.SIGKILL)
