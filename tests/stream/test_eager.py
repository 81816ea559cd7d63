"""start_eagerly on both event loops the worker runs on: at once when nothing waits, a task as
``asyncio.ensure_future`` would make otherwise, with results, errors and cancellation passed along."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from stream_app.eager import Finished, start_eagerly

Loop = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=[asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Loop:
    return request.param  # type: ignore[no-any-return]


async def _steps(trace: list[str], wait: Callable[[], Awaitable[Any]] | None = None) -> str:
    trace.append("started")
    if wait is not None:
        trace.append(f"waited for {await wait()}")
    trace.append("ended")
    return "result"


def test_a_coroutine_that_never_waits_ends_at_once_without_a_task(run: Loop) -> None:
    async def main() -> tuple[object, list[str], int]:
        trace: list[str] = []
        tasks_before = len(asyncio.all_tasks())
        started = start_eagerly(_steps(trace))
        return started, trace, len(asyncio.all_tasks()) - tasks_before

    assert run(main()) == (Finished("result"), ["started", "ended"], 0)


def test_an_error_before_the_first_wait_is_raised_by_the_call(run: Loop) -> None:
    async def failing() -> None:
        raise ValueError("bad message")

    async def main() -> None:
        start_eagerly(failing())

    with pytest.raises(ValueError, match="bad message"):
        run(main())


def test_a_coroutine_that_waits_ran_up_to_its_wait_and_goes_on_in_a_task(run: Loop) -> None:
    async def main() -> tuple[list[str], str, list[str]]:
        trace: list[str] = []
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        started = start_eagerly(_steps(trace, lambda: future))
        assert isinstance(started, asyncio.Task)
        before = list(trace)
        asyncio.get_running_loop().call_soon(future.set_result, "the future")
        return before, await started, trace

    assert run(main()) == (["started"], "result", ["started", "waited for the future", "ended"])


def test_a_bare_yield_and_several_waits_go_on_in_order(run: Loop) -> None:
    async def several(trace: list[str]) -> int:
        for step in range(3):
            await asyncio.sleep(0)  # yields None, not a future
            trace.append(f"yield {step}")
            event = asyncio.Event()
            asyncio.get_running_loop().call_soon(event.set)
            await event.wait()
            trace.append(f"event {step}")
        return 3

    async def main() -> tuple[int, list[str]]:
        trace: list[str] = []
        started = start_eagerly(several(trace))
        assert isinstance(started, asyncio.Task)
        return await started, trace

    result, trace = run(main())
    assert result == 3 and trace == [f"{kind} {step}" for step in range(3) for kind in ("yield", "event")]


def test_a_failed_future_is_raised_where_the_coroutine_waits(run: Loop) -> None:
    async def recovering(future: asyncio.Future[str]) -> str:
        try:
            return await future
        except KeyError as error:
            return f"handled {error}"

    async def main() -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        started = start_eagerly(recovering(future))
        assert isinstance(started, asyncio.Task)
        future.set_exception(KeyError("gone"))
        return await started

    assert run(main()) == "handled 'gone'"


def test_cancelling_the_task_cancels_what_the_coroutine_waits_for(run: Loop) -> None:
    async def main() -> tuple[bool, list[str]]:
        trace: list[str] = []
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def waiting() -> None:
            try:
                await future
            except asyncio.CancelledError:
                trace.append("cancelled where it waited")
                raise

        started = start_eagerly(waiting())
        assert isinstance(started, asyncio.Task)
        await asyncio.sleep(0)
        started.cancel()
        with pytest.raises(asyncio.CancelledError):
            await started
        return future.cancelled(), trace

    assert run(main()) == (True, ["cancelled where it waited"])
