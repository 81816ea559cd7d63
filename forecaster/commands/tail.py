"""``forecaster tail``: follow the predictions topic, as a table for people or JSON lines for programs."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any, TextIO

from forecaster.cli_options import count, seconds
from forecaster.settings import Settings

TABLE_COLUMNS = (("record_type", 10), ("ticker", 8), ("as_of", 10), ("target_date", 11), ("horizon", 7),
                 ("model", 10),
                 ("predicted_close", 15), ("lower_95", 10), ("upper_95", 10), ("actual_close", 12),
                 ("error", 10))


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "tail", help="show predictions and scores as they arrive",
        description="Follow the predictions topic (or, with --shadow, the challengers' topic). Records are "
        "JSON (schemas/prediction.schema.json and schemas/score.schema.json), keyed by ticker.",
    )
    parser.add_argument("--ticker", action="append", default=None,
                        help="only this ticker (repeatable)")
    parser.add_argument("--horizon", action="append", type=count, default=None, metavar="H",
                        help="only records of this horizon in bars (repeatable; FORECASTER_HORIZONS)")
    parser.add_argument("--shadow", action="store_true",
                        help="follow the challengers' records (FORECASTER_TOPIC_SHADOW) instead")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--max-records", type=count, default=None, help="stop after this many records")
    parser.add_argument("--idle-timeout", type=seconds, default=None,
                        help="stop after this many seconds without a new record")
    parser.add_argument("--bootstrap", default=None, help="host:port (default: FORECASTER_BOOTSTRAP)")
    parser.add_argument("--connect-timeout", type=seconds, default=10.0, metavar="S",
                        help="seconds to wait for the broker before giving up (default: 10)")
    parser.set_defaults(run=run)


def format_row(record: dict[str, Any]) -> str:
    cells = []
    for name, width in TABLE_COLUMNS:
        value = record.get(name, "")
        if isinstance(value, float):
            value = f"{value:.4f}"
        cells.append(f"{value!s:>{width}}")
    return " ".join(cells)


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    """Print the records; ``out``: where (None: ``sys.stdout`` at the call, as the other commands)."""
    out = sys.stdout if out is None else out
    import orjson
    from kafka import KafkaConsumer

    from forecaster.kafka.client import kafka_python_client, kafka_python_options

    settings = settings.replace(bootstrap=args.bootstrap)
    topic = settings.topic_shadow if args.shadow else settings.topic_predictions
    consumer = kafka_python_client(
        KafkaConsumer, topic, **kafka_python_options(settings),
        group_id=f"forecaster-tail-{uuid.uuid4().hex[:8]}",  # a viewer never moves anyone's offsets
        enable_auto_commit=False,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        bootstrap_timeout_ms=int(args.connect_timeout * 1000),
    )
    wanted = set(args.ticker) if args.ticker else None
    horizons = set(args.horizon) if args.horizon else None
    shown = 0
    last_seen = time.monotonic()
    if args.format == "table":
        print(" ".join(f"{name:>{width}}" for name, width in TABLE_COLUMNS), file=out)
    try:
        while args.max_records is None or shown < args.max_records:
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                if args.idle_timeout is not None and time.monotonic() - last_seen > args.idle_timeout:
                    break
                continue
            last_seen = time.monotonic()
            for message in (m for messages in batch.values() for m in messages):
                try:
                    record = orjson.loads(message.value)
                except orjson.JSONDecodeError:
                    print(f"# not JSON at partition {message.partition} offset {message.offset}", file=out)
                    continue
                if wanted is not None and record.get("ticker") not in wanted:
                    continue
                if horizons is not None and record.get("horizon", 1) not in horizons:
                    continue
                line = orjson.dumps(record).decode() if args.format == "json" else format_row(record)
                print(line, file=out, flush=True)
                shown += 1
                if args.max_records is not None and shown >= args.max_records:
                    break
    finally:
        consumer.close()
    return 0
