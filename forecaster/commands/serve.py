"""``forecaster serve``: the HTTP API (OpenAPI docs at /docs) and the web page, under uvicorn."""

from __future__ import annotations

import argparse

from forecaster.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="serve the HTTP API and the web page",
        description="Serve POST /forecast (a CSV upload or JSON bars, forecast by the champion or a chosen "
        "model, scored against naive), GET /predictions[/TICKER] (the latest records of the predictions "
        "topic), GET /health, GET /models, the web page at / and the OpenAPI docs at /docs.",
    )
    parser.add_argument("--host", default=None, help="address to bind (default: FORECASTER_API_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default: FORECASTER_API_PORT)")
    parser.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                        help="Kafka bootstrap servers (default: FORECASTER_BOOTSTRAP)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    import uvicorn

    from api.app import create_app

    if args.loglevel == "warn":
        # kafka-python logs every failed connection attempt; GET /health reports the broker instead.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    settings = settings.replace(api_host=args.host, api_port=args.port, bootstrap=args.bootstrap)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                log_level="info" if args.loglevel in ("debug", "info") else "warning")
    return 0
