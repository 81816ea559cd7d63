"""What Faust's fetcher costs per message to hand it on, with Faust's consumer and the worker's.

Faust's fetcher (``Consumer._drain_messages``) awaits ``wait_first(callback(message),
suspend_flow.wait())`` for every message. This calls that ``wait_first`` of the two consumers the
apps can have, Faust's own (``ForecasterApp(eager_consumer=False)``) and the worker's
:class:`~stream_app.faust_adapter.EagerConsumer`, with a callback that does not wait (what the
conductor's is while the stream's buffer has room), alternately in rounds on each event loop the
worker runs on, and prints the CPU per message of each and their ratio. No broker: the consumers
are made, not started.

Usage: ``python -m bench.delivery_bench [--messages 50000] [--rounds 3]``. Results go into
docs/benchmarks.md by hand, with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from forecaster.settings import Settings
from stream_app.app import app_options
from stream_app.faust_adapter import ForecasterApp

FAUSTS, EAGER = "Faust's consumer", "EagerConsumer"
LOOPS: dict[str, Callable[[Coroutine[Any, Any, float]], float]] = {"asyncio": asyncio.run,
                                                                     "uvloop": uvloop.run}


async def _deliver(message: int) -> int:
    return message


async def cpu_per_message(settings: Settings, eager: bool, messages: int) -> float:
    """µs of CPU per ``wait_first`` as the fetcher calls it, over ``messages``, of a new app's
    consumer (made in this event loop, whose events it keeps)."""
    consumer: Any = ForecasterApp(settings, eager, **app_options(settings)).consumer
    started = time.process_time()
    for message in range(messages):
        await consumer.wait_first(_deliver(message), consumer.suspend_flow.wait())
    return (time.process_time() - started) / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000, help="messages a measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per event loop")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
          f"{args.messages:,} messages a measurement, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=home)
        consumers = {FAUSTS: False, EAGER: True}
        for loop, run in LOOPS.items():
            figures: dict[str, list[float]] = {name: [] for name in consumers}
            for round_ in range(args.rounds):
                order = list(consumers) if round_ % 2 == 0 else list(reversed(consumers))
                for name in order:
                    figures[name].append(run(cpu_per_message(settings, consumers[name], args.messages)))
            medians = {name: statistics.median(values) for name, values in figures.items()}
            for name, values in figures.items():
                print(f"{loop:<8} {name:<17} {medians[name]:7.2f} us CPU/message "
                      f"({min(values):.2f}-{max(values):.2f})")
            print(f"{loop:<8} {EAGER} / {FAUSTS}: {medians[EAGER] / medians[FAUSTS]:.3f}")


if __name__ == "__main__":
    main()
