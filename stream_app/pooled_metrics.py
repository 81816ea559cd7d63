"""One Prometheus endpoint for several worker processes of one host.

Each worker process serves its own ``/metrics`` on a private port; the pool's endpoint reads them all
at each scrape and serves their series together, each with a ``process`` label naming its worker
process (``"0"``, ``"1"``, ...), beside the pool's own series. Prometheus then sees one target whose
series are those that one target per process would give, told apart by ``process`` instead of
``instance``: dashboards and alerts, which sum over the series or take them one by one, read them
unchanged. A process that does not answer (restarting) is left out of that scrape; its
``forecaster_worker_process_up`` says so.

Examples
--------
>>> page = '# HELP forecaster_bars_consumed_total Bars\\n# TYPE forecaster_bars_consumed_total counter\\n'
>>> page += 'forecaster_bars_consumed_total 7.0\\n'
>>> text = pooled_exposition({"0": page, "1": page.replace("7.0", "5.0")}).decode()
>>> [line for line in text.splitlines() if line.startswith("forecaster_bars")]
['forecaster_bars_consumed_total{process="0"} 7.0', 'forecaster_bars_consumed_total{process="1"} 5.0']
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import socket
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

#: The label that tells the worker processes' series apart.
PROCESS_LABEL = "process"
#: Seconds a scrape waits for one worker process's page.
CHILD_SCRAPE_TIMEOUT_S = 2.0


class PoolMetrics:
    """The pool's own series: how many processes it runs, which are up, how often each restarted."""

    def __init__(self, processes: int) -> None:
        r = self.registry = CollectorRegistry()
        Gauge("forecaster_worker_processes", "Worker processes the pool runs", registry=r).set(processes)
        self.up = Gauge("forecaster_worker_process_up", "Whether a worker process answered the pool's last "
                        "scrape", [PROCESS_LABEL], registry=r)
        self.restarts = Counter("forecaster_worker_process_restarts",
                                "Worker processes restarted after they died", [PROCESS_LABEL], registry=r)


def pooled_exposition(pages: Mapping[str, str], own: Iterable[Metric] = ()) -> bytes:
    """The text exposition of every process's page, each series labelled with its process, after
    the metric families in ``own``; families of the same name are merged into one."""
    families: dict[str, Metric] = {}
    for process, page in pages.items():
        for family in text_string_to_metric_families(page):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type,
                                                        family.unit)
            merged.samples.extend(sample._replace(labels={**sample.labels, PROCESS_LABEL: process})
                                  for sample in family.samples)
    everything = [*own, *families.values()]

    class _Collected:
        def collect(self) -> list[Metric]:
            return everything

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected())
    return generate_latest(registry)


def read_page(url: str, timeout_s: float = CHILD_SCRAPE_TIMEOUT_S) -> str | None:
    """A worker process's ``/metrics`` page, or None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return str(response.read().decode())
    except OSError:
        return None


class PooledMetricsServer:
    """Serves the pooled ``/metrics`` on ``sock`` (bound by the caller) from a daemon thread.

    ``children`` gives, at each scrape, each process's name and its ``/metrics`` URL (None while the
    process is not running).
    """

    def __init__(self, sock: socket, metrics: PoolMetrics,
                 children: Callable[[], Mapping[str, str | None]]) -> None:
        self.metrics = metrics
        self.children = children
        pool = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                body = pool.page()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)

        self.server = ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = sock
        self.server.daemon_threads = True

    def page(self) -> bytes:
        pages: dict[str, str] = {}
        for process, url in self.children().items():
            page = read_page(url) if url is not None else None
            self.metrics.up.labels(process).set(page is not None)
            if page is not None:
                pages[process] = page
        return pooled_exposition(pages, self.metrics.registry.collect())

    def serve_in_background(self) -> None:
        threading.Thread(target=self.server.serve_forever, name="pooled-metrics", daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
