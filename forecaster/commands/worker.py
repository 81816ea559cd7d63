"""``forecaster worker``: the Faust stream worker (same as ``faust -A stream_app.app worker``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from forecaster.settings import Settings, env_name
from forecaster.startup import require_broker, require_core_settings, require_free_port


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "worker", help="run the stream worker: bars -> predictions",
        description="Consume bars, keep per-ticker state in a changelog-backed table, emit predictions and "
        "scores, export Prometheus metrics. Start more workers with the same FORECASTER_APP_ID to scale out.",
    )
    parser.add_argument("--workdir", type=Path, default=None,
                        help="local state of the worker and its MLflow store (default: FORECASTER_HOME)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="Prometheus endpoint port (default: FORECASTER_METRICS_PORT, 9464)")
    parser.add_argument("--bootstrap", default=None, help="host:port (default: FORECASTER_BOOTSTRAP)")
    parser.add_argument("--connect-timeout", type=float, default=30.0, metavar="S",
                        help="seconds to wait for the broker at start before giving up (default: 30)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # The app module reads the environment (so that `faust -A stream_app.app` works alike); the
    # options are handed to it that way.
    overrides = {"home": str(args.workdir.resolve()) if args.workdir else None,
                 "metrics_port": args.metrics_port, "bootstrap": args.bootstrap}
    for name, value in overrides.items():
        if value is not None:
            os.environ[env_name(name)] = str(value)
    settings = settings.replace(**overrides)
    # Faust reports a bad core setting, a taken port or an absent broker with a traceback from its
    # crash handler (the broker after 45 s): they are checked first, to say in one line what to do.
    require_core_settings(settings)
    from models.registry import require_champion_extras

    require_champion_extras(settings)
    require_free_port(settings.metrics_host, settings.metrics_port, what="metrics",
                      setting=env_name("metrics_port"), option="--metrics-port")
    require_broker(settings, args.connect_timeout)
    from stream_app.app import app

    app.forecast_service.log_level = logging.getLogger().level  # type: ignore[attr-defined]  # from -l
    # --without-web: Faust's CLI turns its web server on whatever the app says; one fixed port per
    # worker would stop a second worker on the same host, and the metrics have their own endpoint.
    sys.argv = ["forecaster worker", "worker", "--loglevel", args.loglevel, "--without-web"]
    app.main()
    return 0
