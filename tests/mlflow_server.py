"""A real MLflow tracking server (``mlflow server``) over a SQLite store, for registry outage tests:
a champion registered in the store, the server started on a free port and stopped mid-test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings
from models import registry
from models.core.bar import Bar
from models.training import train

#: MLflow's HTTP client retries a failed request with backoff for minutes by default; a test of an
#: outage wants the outage seen at once.
QUICK_MLFLOW_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def register_champion(settings: Settings, bars: list[Bar]) -> str:
    """Train the ARIMA family on ``bars`` into the settings' store and make it the champion."""
    outcome = train(bars, "arima", settings, test_days=20)
    registry.client(settings).set_registered_model_alias(settings.model_name, registry.CHAMPION,
                                                         outcome.version)
    return str(outcome.version)


class MlflowServer:
    """``mlflow server`` on ``127.0.0.1`` over the SQLite store of ``store`` (its artifacts stay
    where the store put them: the clients read them from the files)."""

    def __init__(self, store: Settings, log: Path) -> None:
        self.backend = store.mlflow_registry_uri
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> MlflowServer:
        """Start the server and wait until it answers its health check."""
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"mlflow server exited with {self.process.returncode}:\n"
                                     f"{self.log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not answer within {timeout_s} s")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server and every process it started (its web workers): the port then refuses."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

