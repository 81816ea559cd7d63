"""``forecaster serve``: the HTTP API (OpenAPI docs at /docs) and the web page, under uvicorn."""

from __future__ import annotations

import argparse

from forecaster.cli_options import port
from forecaster.settings import Settings, env_name
from forecaster.startup import listen


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="serve the HTTP API and the web page",
        description="Serve POST /forecast (a CSV upload or JSON bars, forecast by the champion or a chosen "
        "model, scored against naive), GET /predictions[/TICKER] (the latest records of the predictions "
        "topic), GET /health, GET /models, the web page at / and the OpenAPI docs at /docs.",
    )
    parser.add_argument("--host", default=None, help="address to bind (default: FORECASTER_API_HOST)")
    parser.add_argument("--port", type=port, default=None, help="port (default: FORECASTER_API_PORT)")
    parser.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                        help="Kafka bootstrap servers (default: FORECASTER_BOOTSTRAP)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.app import create_app
    from api.server import config

    settings = settings.replace(api_host=args.host, api_port=args.port, bootstrap=args.bootstrap)
    # Bound here, not by uvicorn, which reports a taken port in its own words with status 1.
    sock = listen(settings.api_host, settings.api_port, what="API", setting=env_name("api_port"),
                  option="--port")
    log_level = "info" if args.loglevel in ("debug", "info") else "warning"
    uvicorn.Server(config(create_app(settings), settings, log_level)).run(sockets=[sock])
    return 0
