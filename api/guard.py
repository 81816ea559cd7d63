"""What every request passes before the app sees it: a trusted Host, a rate limit, a bearer token.

:class:`Guard` is an ASGI middleware that refuses, in this order,

1. a ``Host`` header that is not one of ``FORECASTER_API_TRUSTED_HOSTS`` (400): a page of another
   site that rebinds its DNS name to 127.0.0.1 must not reach the API with the user's browser. Not
   ``/health``, which an orchestrator's probe asks with whatever address it found (a pod's IP): it
   answers, but its texts (the broker's state, the champion's error: addresses, paths) only to a
   request that would pass checks 1 and 3 (``scope["state"]["health_details"]``);
2. a client address past its token bucket (429 with ``Retry-After``), except ``/health``;
3. a request without ``Authorization: Bearer <FORECASTER_API_TOKEN>`` when the token is set (401
   with ``WWW-Authenticate: Bearer``), except ``/health``, ``/`` and ``/static/*``, which the page
   needs before it can ask for the token.

Each refusal is one log line (:func:`refused`): the status, the reason, the client and the path,
printable; never the token.

Examples
--------
>>> printable("ok\\x1b[31mred\\r\\n" + "x" * 300, 20)
'ok\\\\x1b[31mred\\\\r\\\\nxxxxxxxx… (312 characters)'
>>> bucket = RateLimiter(rate_per_s=1, burst=2, clock=iter([0, 0, 0, 0.5, 1.0]).__next__)
>>> [bucket.wait("a") for _ in range(5)]
[0.0, 0.0, 1.0, 0.5, 0.0]
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, MutableMapping
from typing import Any

import orjson

from forecaster.redaction import printable

log = logging.getLogger("api.refused")

#: Client addresses whose buckets are kept; the least recently seen is dropped past it (it starts full
#: again), so a flood of addresses cannot grow the table without bound.
BUCKETS = 10_000
EXEMPT_FROM_TOKEN = ("/health", "/")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[..., Any]


def refused(status: int, reason: str, scope: Scope) -> None:
    """The one log line of a refused request."""
    client = scope.get("client") or ("?",)
    log.warning("refused %d %s %s: %s (client %s)", status, scope.get("method", ""),
                printable(scope.get("path", "")), reason, printable(str(client[0]), 60))


class RateLimiter:
    """A token bucket per client address: ``burst`` requests at once, ``rate_per_s`` on average."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate_per_s, max(1, burst), clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, client: str) -> float:
        """0 when ``client`` may send a request now (it is counted), else the seconds to wait."""
        now = self.clock()
        tokens, then = self.buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self.buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
        if len(self.buckets) > BUCKETS:
            self.buckets.popitem(last=False)
        return wait


class Guard:
    """The ASGI middleware of the module's three checks around ``app``."""

    def __init__(self, app: ASGIApp, *, hosts: Collection[str], token: str, rate_per_s: float,
                 burst: int) -> None:
        self.app, self.hosts = app, {h.lower() for h in hosts}
        self.token = token.encode()
        self.limiter = RateLimiter(rate_per_s, burst) if rate_per_s > 0 else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        path = scope["path"]
        if path == "/health":
            details = self._trusted(headers) and self._authorized(headers)
            scope.setdefault("state", {})["health_details"] = details
            return await self.app(scope, receive, send)
        if not self._trusted(headers):
            host = _host_name(headers.get(b"host", b"").decode("latin-1"))
            return await self.refuse(scope, send, 400, f"Host '{printable(host, 60)}' is not trusted")
        if self.limiter is not None:
            client = (scope.get("client") or ("?",))[0]
            wait = self.limiter.wait(client)
            if wait > 0:
                return await self.refuse(scope, send, 429, "too many requests",
                                         [(b"retry-after", str(math.ceil(wait)).encode())])
        exempt = path in EXEMPT_FROM_TOKEN or path.startswith("/static/")
        if not exempt and not self._authorized(headers):
            return await self.refuse(scope, send, 401, "no valid bearer token",
                                     [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)

    def _trusted(self, headers: dict[bytes, bytes]) -> bool:
        """Whether the request's Host is a trusted one."""
        return "*" in self.hosts or _host_name(headers.get(b"host", b"").decode("latin-1")) in self.hosts

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        """Whether the request carries the bearer token (always, when none is set)."""
        if not self.token:
            return True
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)

    @staticmethod
    async def refuse(scope: Scope, send: Any, status: int, reason: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
        refused(status, reason, scope)
        body = orjson.dumps({"detail": {"message": reason}})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *(headers or [])]})
        await send({"type": "http.response.body", "body": body})


def _host_name(host: str) -> str:
    """The name of a Host header without its port: ``[::1]:8000`` -> ``::1``.

    >>> _host_name("[::1]:8000"), _host_name("LocalHost:80"), _host_name("127.0.0.1")
    ('::1', 'localhost', '127.0.0.1')
    """
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host
