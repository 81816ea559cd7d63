"""``forecaster worker``: the Faust stream worker (same as ``faust -A stream_app.app worker``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from forecaster.cli_options import port, processes, seconds
from forecaster.settings import Settings, env_name
from forecaster.startup import (
    listen,
    require_broker,
    require_core_settings,
    require_event_loop,
    require_free_port,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "worker", help="run the stream worker: bars -> predictions",
        description="Consume bars, keep per-ticker state in a changelog-backed table, emit predictions and "
        "scores, export Prometheus metrics. --processes runs several workers of one group on this host "
        "behind one metrics endpoint; start more on other hosts with the same FORECASTER_APP_ID to scale "
        "out.",
    )
    parser.add_argument("--workdir", type=Path, default=None,
                        help="local state of the worker and its MLflow store (default: FORECASTER_HOME)")
    parser.add_argument("--processes", type=processes, default=None, metavar="N",
                        help="worker processes on this host, one consumer group, one metrics endpoint; "
                        "0: one per CPU (default: FORECASTER_WORKER_PROCESSES, 1)")
    # A process of a pool (stream_app.supervisor): it stops when the pool's pipe on its stdin closes.
    parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--metrics-port", type=port, default=None,
                        help="Prometheus endpoint port (default: FORECASTER_METRICS_PORT, 9464)")
    parser.add_argument("--bootstrap", default=None, help="host:port (default: FORECASTER_BOOTSTRAP)")
    parser.add_argument("--connect-timeout", type=seconds, default=30.0, metavar="S",
                        help="seconds to wait for the broker at start before giving up (default: 30)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    require_event_loop(settings)  # before anything imports Faust
    from stream_app.supervisor import WorkerPool, pool_size, stop_when_stdin_closes

    settings = settings.replace(home=str(args.workdir.resolve()) if args.workdir else None,
                                metrics_port=args.metrics_port, bootstrap=args.bootstrap,
                                worker_processes=args.processes)
    workers = pool_size(settings.worker_processes)  # the settings hold it to 0..MAX_PROCESSES
    # Faust reports a bad core setting, a taken port or an absent broker with a traceback from its
    # crash handler (the broker after 45 s): they are checked first, to say in one line what to do.
    require_core_settings(settings)
    from models.registry import require_champion_extras

    require_champion_extras(settings)
    metrics_port = {"what": "metrics", "setting": env_name("metrics_port"), "option": "--metrics-port"}
    if workers > 1:
        metrics_socket = listen(settings.metrics_host, settings.metrics_port, **metrics_port)
        require_broker(settings, args.connect_timeout)
        return WorkerPool(settings, workers, args.loglevel).run(metrics_socket)
    require_free_port(settings.metrics_host, settings.metrics_port, **metrics_port)
    require_broker(settings, args.connect_timeout)
    if args.supervised:
        stop_when_stdin_closes()
    from stream_app.app import create_app
    from stream_app.faust_adapter import run_worker

    run_worker(create_app(settings, log_level=logging.getLogger().level), args.loglevel)  # -l's level
