"""The uvicorn server of ``forecaster serve``: its limits, and a timeout uvicorn lacks.

uvicorn closes a keep-alive connection that stays idle, but it waits forever for a request whose
headers never end: a client that opens sockets and sends nothing, or a byte at a time, holds them
(and, past the concurrency limit, turns everyone else away). :func:`protocol` closes such a
connection once its headers have taken ``FORECASTER_API_HEADER_TIMEOUT_S``; the body's own timeout
is the app's (:mod:`api.app`).

:func:`protocol` also caps the connections and requests served at once
(``FORECASTER_API_CONCURRENCY``): a request past either gets a 503, refused as the guard refuses
(:func:`api.guard.refused`'s log line, a JSON answer). uvicorn's own ``limit_concurrency`` makes the
same count but logs only "Exceeded concurrency limit.", without the client or the path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.guard import Guard, Scope
from forecaster.settings import Settings

log = logging.getLogger("api.refused")


def protocol(header_timeout_s: float, concurrency: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request headers take over
    ``header_timeout_s`` seconds (counted from the connection, or from the first byte of a later
    request on a kept-alive one), and refusing a request with a 503 while the server holds more than
    ``concurrency`` connections or requests, its own included."""

    class LimitedProtocol(H11Protocol):
        header_timer: asyncio.TimerHandle | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.app = self.limited

        async def limited(self, scope: Scope, receive: Any, send: Any) -> None:
            # The server's sets: this connection is in them, and so is this request's task, added
            # before the task runs.
            if len(self.connections) > concurrency or len(self.tasks) > concurrency:
                return await Guard.refuse(
                    scope, send, 503, f"more than FORECASTER_API_CONCURRENCY ({concurrency}) connections "
                    "or requests at once: retry shortly", [(b"retry-after", b"1"), (b"connection", b"close")])
            return await self.config.loaded_app(scope, receive, send)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.header_timer = self.loop.call_later(header_timeout_s, self.headers_too_slow)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # h11 leaves IDLE once a request's headers are complete.
            if self.conn.their_state is not h11.IDLE:
                self.stop_header_timer()
            elif self.header_timer is None:
                self.header_timer = self.loop.call_later(header_timeout_s, self.headers_too_slow)

        def connection_lost(self, exc: Exception | None) -> None:
            self.stop_header_timer()
            super().connection_lost(exc)

        def stop_header_timer(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def headers_too_slow(self) -> None:
            self.header_timer = None
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                client = self.client[0] if self.client else "?"
                log.warning("refused: request headers not complete in %g s (client %s); connection closed",
                            header_timeout_s, client)
                self.transport.close()

    return LimitedProtocol


def config(app: Any, settings: Settings, log_level: str) -> uvicorn.Config:
    """The uvicorn configuration of ``app`` with the limits of ``settings``."""
    return uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level=log_level,
                          http=protocol(settings.api_header_timeout_s, settings.api_concurrency),
                          timeout_keep_alive=settings.api_keep_alive_s)
