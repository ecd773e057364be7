"""The node's HTTP face (aiohttp): POST /rpc, WebSocket /ws, GET /metrics, GET /healthz, and the dashboard
at GET / (node/rpc/dashboard.py)."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from socket import SO_SNDBUF, SOL_SOCKET
from typing import Any, Callable

from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from node import crypto, encoding, limits
from node.app import CommittedBlock, Ledger
from node.rpc import errors
from node.rpc.dashboard import Dashboard
from node.rpc.budget import Bucket, ClientBudgets
from node.rpc.connections import ConnectionGuard, ConnectionLimits
from node.rpc.jsonrpc import INVALID_PARAMS, INVALID_REQUEST, AdminContext, Dispatcher, RateLimited, RpcError
from node.rpc.subscriptions import TOPICS, Connection, Subscription, SubscriptionHub

log = logging.getLogger("paychain.rpc")

GATEWAY_CLIENT = "(gateway)"
"""The client address recorded for connections that presented a gateway token (no per-address quota)."""


class Metrics:
    """Prometheus metrics of one node (own registry, so several nodes can share a process in tests)."""

    def __init__(self, ledger: Ledger, consensus_info: Callable[[], dict[str, Any]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.rpc_calls = Counter("paychain_rpc_calls", "JSON-RPC calls", ["method", "outcome"], registry=self.registry)
        self.blocks = Counter("paychain_blocks_committed", "Blocks committed", registry=self.registry)
        self.txs = Counter("paychain_txs_committed", "Transactions committed", ["success"], registry=self.registry)
        self.height = Gauge("paychain_height", "Height of the last committed block", registry=self.registry)
        self.block_txs = Histogram("paychain_block_txs", "Transactions per block", registry=self.registry,
                                   buckets=(0, 1, 10, 100, 500, 1000, 2000, 4000, 8000))
        mempool = Gauge("paychain_mempool_txs", "Transactions in the mempool", registry=self.registry)
        mempool.set_function(lambda: len(ledger.mempool))
        self.registry.register(_RejectionCollector(ledger))
        if consensus_info is not None:
            self.registry.register(_ConsensusCollector(consensus_info))
        self.height.set(ledger.head.height)
        ledger.listeners.append(self.on_commit)

    def on_commit(self, committed: CommittedBlock) -> None:
        self.blocks.inc()
        self.height.set(committed.block.header.height)
        self.block_txs.observe(len(committed.envelopes))
        succeeded = sum(1 for r in committed.receipts if r.success)
        self.txs.labels("true").inc(succeeded)
        self.txs.labels("false").inc(len(committed.receipts) - succeeded)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ConsensusCollector:
    """View, connected peers, and consensus messages dropped by reason (bad signature, stale, …)."""

    def __init__(self, consensus_info: Callable[[], dict[str, Any]]) -> None:
        self._info = consensus_info

    def collect(self):
        info = self._info()
        view = GaugeMetricFamily("paychain_consensus_view", "Current consensus view at this height")
        view.add_metric([], info.get("view", 0))
        peers = GaugeMetricFamily("paychain_peers_connected", "Validator peers with a live connection")
        peers.add_metric([], sum(1 for p in info.get("peers", []) if p.get("connected")))
        dropped = CounterMetricFamily("paychain_consensus_messages_dropped", "Consensus messages dropped, by reason",
                                      labels=["reason"])
        for reason, count in sorted(info.get("dropped", {}).items()):
            dropped.add_metric([reason], count)
        sent = CounterMetricFamily("paychain_consensus_messages_sent", "Consensus messages sent")
        sent.add_metric([], info.get("messages_out", 0))
        p2p = GaugeMetricFamily("paychain_p2p", "Transport counters (refused_peers: dials refused for not being "
                                "a current validator or allowlisted full node; dropped_frames: send-queue overflow)",
                                labels=["counter"])
        for counter, count in sorted(info.get("p2p", {}).items()):
            p2p.add_metric([counter], count)
        yield from (view, peers, dropped, sent, p2p)


class _RejectionCollector:
    """Exposes the ledger's per-rule rejection counts, which the ledger keeps itself."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def collect(self):
        family = CounterMetricFamily("paychain_txs_rejected", "Transactions rejected, by rule", labels=["rule"])
        for rule, count in sorted(self._ledger.rejections.items()):
            family.add_metric([rule], count)
        yield family


class RpcServer:
    def __init__(self, dispatcher: Dispatcher, ledger: Ledger, host: str, port: int,
                 consensus_info: Callable[[], dict[str, Any]] | None = None, admin_token: str | None = None,
                 gateway_tokens: tuple[str, ...] = (), hostnames: tuple[str, ...] = ()) -> None:
        """`admin_token`: what an HTTP call must present to use admin methods (None: admin methods are off).
        `gateway_tokens`: what a payment gateway presents to use the WebSocket slots kept for gateways.
        `hostnames`: DNS names clients may use for the node besides IP addresses and localhost."""
        self.dispatcher = dispatcher
        self.admin_token = admin_token
        self.gateway_tokens = tuple(token.encode() for token in gateway_tokens)
        self.ledger = ledger
        self.host = host
        self.port = port
        self.metrics = Metrics(ledger, consensus_info)
        self.budgets = ClientBudgets()
        self.hub = SubscriptionHub(ledger)
        connections = Gauge("paychain_ws_connections", "Open WebSocket connections, by who holds them",
                            ["holder"], registry=self.metrics.registry)
        connections.labels("gateway").set_function(lambda: self.hub.connections_of(GATEWAY_CLIENT))
        connections.labels("public").set_function(
            lambda: len(self.hub.connections) - self.hub.connections_of(GATEWAY_CLIENT))
        http = Gauge("paychain_rpc_http", "HTTP connections: open now, and since start those refused for a "
                     "connection limit or closed for a request that did not arrive in time (slow or idle)",
                     ["counter"], registry=self.metrics.registry)
        http.labels("open").set_function(lambda: len(self.guard.watches))
        http.labels("refused").set_function(lambda: self.guard.refused)
        http.labels("timed_out").set_function(lambda: self.guard.timed_out)
        dispatcher.on_call = lambda method, outcome: self.metrics.rpc_calls.labels(method, outcome).inc()
        dispatcher.register("subscribe", self.subscribe, ("topic", "filter"), required=1)
        dispatcher.register("unsubscribe", self.unsubscribe, ("subscription",))
        self.dashboard = Dashboard(ledger)
        self.dashboard.register(dispatcher)
        self.hostnames = frozenset(name.lower() for name in hostnames) | {"localhost"}
        self.guard = ConnectionGuard(ConnectionLimits(
            limits.rpc_connections_max, limits.rpc_connections_per_client_max, limits.rpc_request_header_s,
            limits.rpc_connection_idle_s, limits.rpc_request_body_s), _refused)
        self.app = web.Application(client_max_size=limits.rpc_body_bytes_max,
                                   middlewares=[self.guard.middleware, self._check_host_and_origin])
        self.app.router.add_post("/rpc", self.handle_rpc)
        self.app.router.add_post("/", self.handle_rpc)
        self.app.router.add_get("/ws", self.handle_ws)
        self.app.router.add_get("/metrics", self.handle_metrics)
        self.app.router.add_get("/healthz", self.handle_health)
        self.dashboard.add_routes(self.app)
        self.runner: web.AppRunner | None = None

    async def run(self, ready: asyncio.Event | None = None) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        try:
            self.port = await self.guard.start(self.runner, self.host, self.port)
            log.info("JSON-RPC on http://%s:%d/rpc", self.host, self.port)
            if ready is not None:
                ready.set()
            await self.hub.run()   # the WebSocket fan-out, off the commit path, for as long as the server runs
        finally:
            await self.guard.stop()
            await self.runner.cleanup()

    @web.middleware
    async def _check_host_and_origin(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        """DNS rebinding and cross-site requests: a browser page of another site may send requests here,
        but only with its own name in Host (refused unless an IP address, localhost or a configured
        hostname) and, for calls and WebSockets, its own Origin (refused unless it is this node's)."""
        host = _hostname(request.headers.get("Host", ""))
        if host is None or not (_is_ip_address(host) or host in self.hostnames):
            return _refused(421, "unknown Host: use the node's IP address, localhost, or a name in its "
                                 "config's rpc_hostnames")
        if request.method == "POST" or request.path == "/ws":
            origin = request.headers.get("Origin")
            # http or https: behind a TLS proxy the node sees http, the browser https, for the same Host
            if origin is not None and origin not in (f"{scheme}://{request.headers.get('Host', '')}"
                                                     for scheme in ("http", "https")):
                return _refused(403, "cross-origin requests are not served")
        if request.method == "POST" and request.content_type != "application/json":
            return _refused(415, "JSON-RPC calls need Content-Type: application/json")
        return await handler(request)

    async def handle_rpc(self, request: web.Request) -> web.Response:
        body = await request.read()   # already read by the guard, within its deadline and client_max_size
        admin = self._is_admin(request)
        try:
            response = await self.dispatcher.handle_body(body, AdminContext(admin),
                                                         None if admin else self._bucket_of(request))
        except RateLimited as refusal:
            return web.Response(status=429, text=refusal.response, content_type="application/json",
                                headers={"Retry-After": str(-(-refusal.retry_after_ms // 1000))})
        if response is None:
            return web.Response(status=204)
        return web.Response(text=response, content_type="application/json")

    def _is_admin(self, request: web.Request) -> bool:
        presented = _bearer_token(request)
        return self.admin_token is not None and presented is not None and \
            hmac.compare_digest(presented, self.admin_token.encode())

    def _bucket_of(self, request: web.Request) -> Bucket | None:
        """The cost budget a request is charged to: its client address's, none for a named gateway."""
        return None if self._is_gateway(request) else self.budgets.of(request.remote or "")

    def _is_gateway(self, request: web.Request) -> bool:
        presented = _bearer_token(request)
        # every token compared, so the time taken does not tell which one nearly matched
        return presented is not None and \
            sum(hmac.compare_digest(presented, token) for token in self.gateway_tokens) > 0

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_health(self, request: web.Request) -> web.Response:
        head = self.ledger.head
        return web.json_response({"status": "ok", "height": head.height})

    async def handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        client = request.remote or ""
        gateway = self._is_gateway(request)
        public_slots = limits.ws_connections_max - limits.ws_connections_reserved_for_gateways
        if len(self.hub.connections) >= (limits.ws_connections_max if gateway else public_slots):
            raise web.HTTPTooManyRequests(text="every WebSocket slot open to this client is taken; retry later",
                                          headers={"Retry-After": "5"})
        if not gateway and self.hub.connections_of(client) >= limits.ws_connections_per_client_max:
            raise web.HTTPTooManyRequests(text=f"at most {limits.ws_connections_per_client_max} WebSocket "
                                               "connections per client address")
        socket = web.WebSocketResponse(max_msg_size=limits.ws_message_bytes_max, heartbeat=30)
        await socket.prepare(request)
        raw_socket = request.transport.get_extra_info("socket") if request.transport is not None else None
        if raw_socket is not None:
            raw_socket.setsockopt(SOL_SOCKET, SO_SNDBUF, limits.ws_socket_send_buffer_bytes)
        connection = Connection(client=GATEWAY_CLIENT if gateway else client)   # gateways use no public quota
        bucket = None if gateway else self.budgets.of(client)
        connection.on_overflow = lambda: _drop_if_not_reading(request.transport)
        self.hub.add_connection(connection)
        writer = asyncio.create_task(self._write_notifications(socket, connection))
        try:
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    response = await self.dispatcher.handle_body(message.data, connection, bucket)
                except RateLimited as refusal:
                    response = refusal.response
                if response is not None:
                    await socket.send_str(response)
        finally:
            self.hub.remove_connection(connection)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return socket

    async def _write_notifications(self, socket: web.WebSocketResponse, connection: Connection) -> None:
        while True:
            message = await connection.next_message()
            if message is None or connection.overflowed:
                await socket.close(code=1008, message=b"subscriber too slow: notification buffer full")
                return
            await socket.send_str(message)

    async def subscribe(self, context: Any, topic: Any, filter: Any = None) -> str:
        connection = _websocket_connection(context)
        if topic not in TOPICS:
            raise RpcError(errors.SUBSCRIPTION_UNKNOWN_TOPIC, f"unknown topic {topic!r}; topics: {', '.join(TOPICS)}")
        if len(connection.subscriptions) >= limits.ws_subscriptions_per_connection_max:
            raise RpcError(errors.SUBSCRIPTION_LIMIT, f"at most {limits.ws_subscriptions_per_connection_max} "
                                                      "subscriptions per connection")
        parsed: bytes | None = None
        if topic == "account" or (topic == "orders" and filter is not None):
            try:
                parsed = crypto.parse_address(filter)
            except crypto.InvalidAddress as error:
                raise RpcError(INVALID_PARAMS, f"Invalid params: the {topic} topic filters by an address: {error}") \
                    from error
        elif topic == "tx" and filter is not None:
            try:
                parsed = encoding.parse_hex(filter, "tx hash", 32)
            except encoding.DecodeError as error:
                raise RpcError(INVALID_PARAMS, f"Invalid params: {error}") from error
            if len(parsed) != 32:
                raise RpcError(INVALID_PARAMS, "Invalid params: tx hash must be 32 bytes of hex")
        self._check_subscription_room(connection, topic, parsed)
        subscription = Subscription(self.hub.new_subscription_id(), topic, parsed)
        self.hub.add_subscription(connection, subscription)
        return subscription.id

    def _check_subscription_room(self, connection: Connection, topic: str, filter: bytes | None) -> None:
        """One subscription per topic and filter on a connection; bounds per client address and for all public
        clients together (each subscription costs a message per block). Gateways are bounded per connection only."""
        for existing in connection.subscriptions.values():
            if (existing.topic, existing.filter) == (topic, filter):
                raise RpcError(errors.SUBSCRIPTION_DUPLICATE, f"this connection already has that subscription: "
                                                              f"{existing.id}")
        if connection.client == GATEWAY_CLIENT:
            return
        if self.hub.subscriptions_of(connection.client) >= limits.ws_subscriptions_per_client_max:
            raise RpcError(errors.SUBSCRIPTION_LIMIT, f"at most {limits.ws_subscriptions_per_client_max} "
                                                      "subscriptions per client address, over all its connections")
        if self.hub.subscriptions - self.hub.subscriptions_of(GATEWAY_CLIENT) >= limits.ws_public_subscriptions_max:
            raise RpcError(errors.SUBSCRIPTION_LIMIT, "this node serves as many subscriptions as it can; retry later")

    async def unsubscribe(self, context: Any, subscription: Any) -> bool:
        connection = _websocket_connection(context)
        if not isinstance(subscription, str):
            raise RpcError(INVALID_PARAMS, "Invalid params: unsubscribe takes [subscription id]")
        return self.hub.remove_subscription(connection, subscription)


def _websocket_connection(context: Any) -> Connection:
    if not isinstance(context, Connection):
        raise RpcError(errors.SUBSCRIPTION_HTTP, "subscriptions need a WebSocket connection to /ws")
    return context


def _hostname(host_header: str) -> str | None:
    """The name or address of a Host header without its port, lower case; None if it is not one."""
    if host_header.startswith("["):   # [IPv6]:port
        end = host_header.find("]")
        return host_header[1:end].lower() if end > 0 else None
    name = host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
    return name.lower() or None


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _refused(status: int, reason: str) -> web.Response:
    error = RpcError(INVALID_REQUEST, f"Invalid Request: {reason}")
    return web.Response(status=status, text=json.dumps({"jsonrpc": "2.0", "error": error.to_json(), "id": None}),
                        content_type="application/json")


def _bearer_token(request: web.Request) -> bytes | None:
    """The token of an `Authorization: Bearer` header, as bytes (any header bytes, never an error)."""
    presented = request.headers.get("Authorization", "")
    if not presented.startswith("Bearer "):
        return None
    return presented[len("Bearer "):].encode("utf-8", "surrogateescape")


def _drop_if_not_reading(transport: asyncio.Transport | None) -> None:
    """Bytes still unsent in our transport mean the client is not reading: the writer is stuck waiting to
    drain and a close frame would never arrive, so drop the TCP connection rather than hold it forever."""
    if transport is not None and transport.get_write_buffer_size() > 0:
        transport.abort()
