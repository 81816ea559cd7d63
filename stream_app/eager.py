"""A coroutine run at once, in the caller's task, until it first has to wait.

Faust hands every consumed message to its conductor through ``Service.wait_first``, which makes four
tasks and an ``asyncio.wait`` per message: about 22 µs of CPU a message on uvloop, 31 on asyncio,
against 2 this way (``bench/delivery_bench.py``, docs/benchmarks.md), for a callback that waits
only when a stream's buffer is full. :func:`start_eagerly` runs such a callback to its end without
any task when it does not wait, and hands what is left of it to one task when it does (what Python
3.12's eager tasks do; the worker runs on 3.11).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Finished(Generic[T]):
    """A coroutine that ran to its end without waiting, and what it returned."""

    value: T


def start_eagerly(coro: Coroutine[Any, Any, T]) -> Finished[T] | asyncio.Task[T]:
    """Run ``coro`` now, up to its end or the first thing it waits for.

    Returns :class:`Finished` with its result when it never waited; otherwise a task that goes on
    from where it stopped, as the task ``asyncio.ensure_future(coro)`` would have been (cancelling
    it cancels what the coroutine waits for). An exception raised before the coroutine first waits
    is raised here.

    Examples
    --------
    >>> import asyncio
    >>> async def add(a, b):
    ...     return a + b
    >>> start_eagerly(add(1, 2))
    Finished(value=3)
    >>> async def later():
    ...     await asyncio.sleep(0)
    ...     return "done"
    >>> async def main():
    ...     task = start_eagerly(later())
    ...     return type(task).__name__, await task
    >>> asyncio.run(main())
    ('Task', 'done')
    """
    try:
        awaited = coro.send(None)
    except StopIteration as end:
        return Finished(end.value)
    return asyncio.ensure_future(_go_on(coro, awaited))


async def _go_on(coro: Coroutine[Any, Any, T], awaited: Any) -> T:
    """Drive ``coro`` on as a task would, from the future (or bare yield) it last gave up on."""
    while True:
        error: BaseException | None = None
        try:
            if awaited is None:  # a bare yield (asyncio.sleep(0)): run again on the loop's next turn
                await _bare_yield()
            else:
                # Taken over from the coroutine's own yield, as a task takes it (else it reads as
                # awaited twice: "await wasn't used with future").
                awaited._asyncio_future_blocking = False
                await awaited
        except BaseException as failed:  # cancelled or failed: the coroutine decides what follows
            error = failed
        try:
            awaited = coro.send(None) if error is None else coro.throw(error)
        except StopIteration as end:
            return end.value


@types.coroutine
def _bare_yield() -> Generator[None, None, None]:
    yield
