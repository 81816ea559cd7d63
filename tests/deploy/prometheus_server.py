"""A real Prometheus (the Debian ``prometheus`` package) on a free port, for tests.

:func:`running_prometheus` writes a config that scrapes the given targets every second and loads the
given rule files, starts the server, polls ``/-/ready`` and stops it on exit. Reusable by any test
that wants to query real metrics, e.g. an end-to-end test scraping a worker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from forecaster.kafka.broker import free_port

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
INSTALL_HINT = "install Debian's `prometheus` package (apt-get install --no-install-recommends prometheus)"


def tool(name: str) -> str:
    """Path of ``prometheus`` or ``promtool``; a clear error when the package is missing."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"`{name}` is not on PATH: {INSTALL_HINT}")
    return path


@dataclass(frozen=True)
class PrometheusServer:
    """A running server's base URL, with the HTTP API calls tests need."""

    url: str

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET ``/api/v1/<path>``; the decoded body, also for 4xx answers (which carry the error)."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return json.load(error)

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query: ``{"status": "success", "data": ...}`` or ``{"status": "error", ...}``."""
        return self.api("query", query=expr)

    def values(self, expr: str) -> list[float]:
        """The sample values of an instant query that must succeed (an empty list: no series)."""
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer)
        return [float(sample["value"][1]) for sample in answer["data"]["result"]]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def write_config(path: Path, targets: Sequence[str], rule_files: Sequence[Path], job: str) -> None:
    config: dict[str, Any] = {
        # One-second scrapes and evaluations so tests see new samples, rates and alerts quickly.
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(Path(f).resolve()) for f in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@contextmanager
def running_prometheus(workdir: Path, targets: Sequence[str] = (), rule_files: Sequence[Path] = (),
                       job: str = "forecaster-worker") -> Iterator[PrometheusServer]:
    """Start Prometheus in ``workdir`` scraping ``targets`` (``host:port``) as ``job``; stop it after."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    write_config(config, targets, rule_files, job)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus did not become ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield PrometheusServer(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
