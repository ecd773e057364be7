"""Wires the gateway together (`bootstrap`) and runs it: HTTP server, node health checks, chain followers,
webhook sender — one TaskGroup, stopped together.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway import api, checkout, egress, merchant_pages, openapi
from gateway.chain import ChainView, Signer
from gateway.config import GatewayConfig
from gateway.follower import Follower
from gateway.nodes import NodePool
from gateway.payments import PaymentBook
from gateway.security import (CONNECTION_IDLE_S, CONNECTIONS_MAX, CONNECTIONS_PER_CLIENT_MAX, REQUEST_BODY_S,
                               REQUEST_BYTES_MAX, REQUEST_HEADER_S, AccessLogger, Guard, error_response,
                               errors_and_headers)
from gateway.services import Services
from gateway.store import GatewayStore
from gateway.webhooks import WebhookSender
from node import limits
from node.rpc.connections import ConnectionGuard, ConnectionLimits

log = logging.getLogger("paychain.gateway")

HTTP_CONNECTIONS_MAX = 200
"""Outgoing connections (to nodes and webhook receivers) at once."""


def bootstrap(config: GatewayConfig, session: aiohttp.ClientSession,
              webhook_session: aiohttp.ClientSession) -> Services:
    """`session` reaches the nodes; `webhook_session` (egress.webhook_session) reaches merchants' receivers."""
    store = GatewayStore.open(config.data_dir / "gateway.db")
    merchants = {merchant.address_text: merchant for merchant in config.merchants}
    book = PaymentBook(store, merchants)
    nodes = NodePool(config.regions, session)
    sender = WebhookSender(store, merchants, webhook_session, config.webhook_retry_base_s,
                           private_allowed=config.webhooks_to_private_addresses)
    book.on_delivery_queued = sender.wake
    return Services(config=config, store=store, book=book, nodes=nodes,
                    chains={name: ChainView(client) for name, client in nodes.regions.items()},
                    gateway_signer=Signer(config.keys),
                    merchant_signers={m.address_text: Signer(m.signing_keys) for m in config.merchants
                                      if m.signing_keys is not None},
                    guard=Guard(config), webhooks=sender, session=session)


GUARD_ERROR_CODES = {400: "invalid_request", 408: "request_timeout", 413: "request_too_large"}
"""The gateway's error codes for the connection guard's refusals of a request body."""


def connection_guard(config: GatewayConfig) -> ConnectionGuard:
    return ConnectionGuard(ConnectionLimits(CONNECTIONS_MAX, CONNECTIONS_PER_CLIENT_MAX, REQUEST_HEADER_S,
                                            CONNECTION_IDLE_S, REQUEST_BODY_S, exempt=config.trusted_proxies),
                           lambda status, reason: error_response(status, GUARD_ERROR_CODES[status], reason))


def make_app(services: Services, guard: ConnectionGuard) -> web.Application:
    app = web.Application(middlewares=[errors_and_headers, guard.middleware], client_max_size=REQUEST_BYTES_MAX)
    app["services"] = services
    app["idempotency_in_flight"] = set()
    app["checkout_in_flight"] = set()
    app["trusted_proxies"] = services.config.trusted_proxies
    """Payment ids whose checkout submission is being sent (one at a time per checkout)."""
    app.add_routes(api.routes)
    app.add_routes(checkout.routes)
    app.add_routes(merchant_pages.routes)
    app.router.add_get("/openapi.json", openapi.handle_openapi)
    app.router.add_get("/healthz", handle_health)
    app.router.add_static("/static/", checkout.WEB_FOLDER, append_version=False)
    return app


async def handle_health(request: web.Request) -> web.Response:
    services: Services = request.app["services"]
    regions = [client.health() for client in services.nodes.regions.values()]
    healthy = all(any(node["healthy"] for node in region["nodes"]) for region in regions)
    return web.json_response({"healthy": healthy, "regions": regions}, status=200 if healthy else 503)


async def serve(config: GatewayConfig, ready: asyncio.Event | None = None) -> None:
    """Run the gateway until cancelled."""
    # to one node, fewer connections than it allows one client address
    connector = aiohttp.TCPConnector(limit=HTTP_CONNECTIONS_MAX, limit_per_host=limits.rpc_connections_per_client_max // 2)
    async with aiohttp.ClientSession(connector=connector) as session, \
            egress.webhook_session(HTTP_CONNECTIONS_MAX, config.webhooks_to_private_addresses) as webhook_session:
        services = bootstrap(config, session, webhook_session)
        guard = connection_guard(config)
        runner = web.AppRunner(make_app(services, guard), access_log_class=AccessLogger)
        await runner.setup()
        try:
            await guard.start(runner, config.listen_host, config.listen_port)
            log.info("gateway listening on http://%s:%d (public URL %s)", config.listen_host, config.listen_port,
                     config.public_url)
            if ready is not None:
                ready.set()
            async with asyncio.TaskGroup() as group:
                group.create_task(services.nodes.run())
                group.create_task(services.webhooks.run())
                for region, client in services.nodes.regions.items():
                    follower = Follower(client, services.chains[region], services.book, services.store,
                                        services.gateway_signer, config.recharge_auto_confirm)
                    group.create_task(follower.run())
        finally:
            await guard.stop()
            await runner.cleanup()
            services.store.close()


def run_gateway(config_path: Path) -> None:
    from gateway.config import load_gateway_config
    config = load_gateway_config(config_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve_until_signalled(config))


async def _serve_until_signalled(config: GatewayConfig) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, task.cancel)
    try:
        await serve(config)
    except asyncio.CancelledError:
        log.info("gateway stopped")


def describe(config: GatewayConfig) -> dict[str, Any]:
    return {"listen": f"{config.listen_host}:{config.listen_port}", "public_url": config.public_url,
            "regions": [r.name for r in config.regions], "merchants": len(config.merchants)}
