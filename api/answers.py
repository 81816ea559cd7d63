"""A forecast's answer, sent in pieces while it holds its forecast slot.

A forecast's answer can be tens of MB (two records per bar and horizon). Were the slot released
when the answer is made, a client that never reads would keep it in the server's socket buffers
for as long as it keeps the connection, and every other client could do the same: the memory
``FORECASTER_API_FORECASTS`` bounds would not be bounded. :class:`HeldAnswer` is the answer's
JSON, sent a piece at a time, each piece waiting until the client has taken most of the last; the
slot goes back once the last piece is sent, or when the client pauses longer than
``FORECASTER_API_BODY_TIMEOUT_S`` (the request body's limit, the same both ways): then the
connection is closed, with one log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from api.guard import Scope, refused

#: Bytes sent at a time: what a reader that stopped keeps in the server's buffers.
PIECE = 1 << 20


class HeldAnswer(Response):
    """JSON ``body`` sent in pieces of :data:`PIECE` bytes; ``release`` called once it is sent or
    given up on (a pause longer than ``pause_s`` seconds)."""

    media_type = "application/json"

    def __init__(self, body: bytes, *, release: Callable[[], None], pause_s: float) -> None:
        super().__init__(body)
        self.release, self.pause_s = release, pause_s

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            body = memoryview(self.body)
            for at in range(0, max(len(body), 1), PIECE):
                # The server waits for the client to take the last piece before it sends another.
                async with asyncio.timeout(self.pause_s):
                    await send({"type": "http.response.body", "body": bytes(body[at : at + PIECE]),
                                "more_body": at + PIECE < len(body)})
        except TimeoutError:
            # The answer is left incomplete: the server closes the connection (and says so too).
            refused(408, f"the client paused reading its answer more than FORECASTER_API_BODY_TIMEOUT_S "
                         f"({self.pause_s:g} s)", scope)
        finally:
            self.release()
