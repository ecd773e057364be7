"""Slow and greedy HTTP clients (slowloris): connection limits and read deadlines for an aiohttp server,
used by the node's RPC server and by the payment gateway.

aiohttp parses a request only once its headers are complete and reads a body only when a handler asks,
so a client that sends a header byte every few seconds, or a body one byte at a time, holds a socket and a
file descriptor for as long as it likes. The guard sits between the listening socket and aiohttp:

- at most `connections_max` connections at once, and `connections_per_client_max` from one client
  address (IPv6 by /64); beyond them a new connection is closed at once, before a byte is read;
- a connection's request must be complete (line and headers) within `header_s` of its first byte;
- an idle keep-alive connection is closed after `idle_s`;
- a request's body must arrive within `body_s` (the middleware reads it before the handler runs; 408).

Addresses in `exempt` (reverse proxies the operator trusts, which apply limits of their own) have no
per-address quota. A request being handled (a WebSocket too) is under none of the deadlines.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from node.rpc.budget import client_key

log = logging.getLogger("paychain.http")

Refusal = Callable[[int, str], web.StreamResponse]
"""Builds the server's own error answer: (HTTP status, reason) -> response."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    connections_max: int
    connections_per_client_max: int
    header_s: float
    """From a request's first byte to its complete headers."""
    idle_s: float
    """An open connection with no request: after it connects, or between keep-alive requests."""
    body_s: float
    """From the handler's start to the last byte of the request's body."""
    exempt: frozenset[str] = frozenset()
    """Client addresses with no per-address quota (trusted reverse proxies)."""


class _Watch:
    """The deadline of one connection, and whether a request of it is being handled."""

    __slots__ = ("transport", "client", "timer", "requests_running", "reading_headers")

    def __init__(self, transport: asyncio.Transport, client: str) -> None:
        self.transport = transport
        self.client = client
        self.timer: asyncio.TimerHandle | None = None
        self.requests_running = 0
        self.reading_headers = False


class ConnectionGuard:
    """Counts connections by client and enforces `ConnectionLimits` (see the module docstring)."""

    def __init__(self, limits: ConnectionLimits, refuse: Refusal) -> None:
        self.limits = limits
        self.refuse = refuse
        self.watches: dict[asyncio.BaseTransport, _Watch] = {}
        self.per_client: Counter[str] = Counter()
        self.refused = 0
        """Connections closed on arrival for being over a limit."""
        self.timed_out = 0
        """Connections closed for a request (headers or body) that did not arrive in time, or for idling."""
        self._server: asyncio.AbstractServer | None = None

    async def start(self, runner: web.BaseRunner, host: str, port: int) -> int:
        """Listen on host:port for `runner` (set up) behind this guard; the port bound (for port 0)."""
        loop = asyncio.get_running_loop()
        http = runner.server
        assert http is not None, "runner.setup() first"
        self._server = await loop.create_server(lambda: _GuardedProtocol(http(), self), host, port,
                                                reuse_address=True)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for watch in list(self.watches.values()):
                watch.transport.abort()
            await self._server.wait_closed()

    # --- connection events (from _GuardedProtocol) -----------------------------------------

    def admit(self, transport: asyncio.Transport) -> bool:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        client = client_key(address)
        over = len(self.watches) >= self.limits.connections_max or (
            address not in self.limits.exempt and self.per_client[client] >= self.limits.connections_per_client_max)
        if over:
            self.refused += 1
            transport.abort()
            return False
        watch = _Watch(transport, client)
        self.watches[transport] = watch
        self.per_client[client] += 1
        self._arm(watch, self.limits.idle_s)
        return True

    def on_data(self, transport: asyncio.BaseTransport) -> None:
        watch = self.watches.get(transport)
        if watch is not None and watch.requests_running == 0 and not watch.reading_headers:
            watch.reading_headers = True          # a request began: its headers must be complete in time
            self._arm(watch, self.limits.header_s)

    def forget(self, transport: asyncio.BaseTransport) -> None:
        watch = self.watches.pop(transport, None)
        if watch is None:
            return
        if watch.timer is not None:
            watch.timer.cancel()
        self.per_client[watch.client] -= 1
        if self.per_client[watch.client] <= 0:
            del self.per_client[watch.client]

    def _arm(self, watch: _Watch, seconds: float) -> None:
        if watch.timer is not None:
            watch.timer.cancel()
        watch.timer = asyncio.get_running_loop().call_later(seconds, self._expire, watch)

    def _expire(self, watch: _Watch) -> None:
        watch.timer = None
        if watch.requests_running == 0 and watch.transport in self.watches:
            self.timed_out += 1
            watch.transport.abort()

    # --- requests (from the middleware) --------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        """Marks the connection busy while the request is handled; reads its body within `body_s` first."""
        watch = self.watches.get(request.transport) if request.transport is not None else None
        if watch is not None:
            watch.requests_running += 1
            watch.reading_headers = False
            if watch.timer is not None:
                watch.timer.cancel()
                watch.timer = None
        try:
            if request.body_exists:
                refusal = await self._read_body(request)
                if refusal is not None:
                    return refusal
            return await handler(request)
        finally:
            if watch is not None:
                watch.requests_running -= 1
                if watch.requests_running == 0 and watch.transport in self.watches:
                    self._arm(watch, self.limits.idle_s)

    async def _read_body(self, request: web.Request) -> web.StreamResponse | None:
        """The body, read into the request (handlers then get it from memory), or the refusal to send."""
        try:
            await asyncio.wait_for(request.read(), self.limits.body_s)
        except asyncio.TimeoutError:
            self.timed_out += 1
            response = self.refuse(408, f"the request body did not arrive within {self.limits.body_s:g} s")
            response.force_close()
            return response
        except web.HTTPRequestEntityTooLarge:
            response = self.refuse(413, f"body exceeds {request.client_max_size} bytes")
            response.force_close()
            return response
        except RequestPayloadError:      # a compressed body that does not decompress, a broken chunk
            response = self.refuse(400, "the body could not be read (bad Content-Encoding or chunking)")
            response.force_close()
            return response
        return None


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the guard told of its arrival, first bytes and end."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.admitted = self.guard.admit(transport)   # type: ignore[arg-type]
        self.transport = transport
        if self.admitted:
            self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.guard.on_data(self.transport)
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.guard.forget(self.transport)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()
