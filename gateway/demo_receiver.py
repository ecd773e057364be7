"""The demo merchant's webhook receiver: checks each notification's signature and logs it.

`paychain gateway demo-receiver --port P --secret-file F` listens on 127.0.0.1:P:

    POST /webhook   verify `Paychain-Signature` (HMAC-SHA256 over "<t>.<body>", at most 5 minutes old and
                    30 s ahead), log one line per notification, answer 200 (401 if the signature is wrong)
    GET  /events    the last notifications received (JSON, newest last), for scripts and tests
    GET  /healthz   200

A real merchant's receiver does the same check before trusting a notification, and dedupes on the
signed body's `id` (not on the unsigned `Paychain-Event-Id` header), because a delivery may be retried
after a lost answer and a captured one may be replayed. It remembers each id for as long as its
timestamp would still be accepted, so a replay inside that window is a duplicate and one after it
fails the timestamp check. Payment ids are logged cut short: they are the secret part of checkout links.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import signal
import time
from pathlib import Path

from aiohttp import web

from gateway import webhooks
from gateway.redaction import redacted_id

EVENTS_KEPT_MAX = 1_000
SEEN_IDS_MAX = 100_000
"""Ids remembered at once; a receiver that would have to forget one still inside its window refuses (503)."""
REMEMBER_S = 300.0 + webhooks.FUTURE_SKEW_S_MAX
log = logging.getLogger("paychain.demo_receiver")


def make_app(secret: bytes) -> web.Application:
    events: collections.deque = collections.deque(maxlen=EVENTS_KEPT_MAX)
    seen: collections.OrderedDict[str, float] = collections.OrderedDict()   # id -> when it may be forgotten

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if not webhooks.verify(secret, request.headers.get(webhooks.SIGNATURE_HEADER, ""), body, time.time()):
            log.warning("rejected a notification with a bad or stale signature")
            return web.json_response({"error": "bad signature"}, status=401)
        notification = json.loads(body)
        event_id = notification["id"]   # signed, unlike the Paychain-Event-Id header
        now = time.time()
        while seen and next(iter(seen.values())) < now:
            seen.popitem(last=False)
        if event_id in seen:
            return web.json_response({"ok": True, "duplicate": True})
        if len(seen) >= SEEN_IDS_MAX:
            return web.json_response({"error": "too many notifications at once"}, status=503)
        seen[event_id] = now + REMEMBER_S
        data = notification["data"]
        events.append({"received_at": now, **notification})
        log.info("webhook %s: payment %s is %s (order %s, %s %s minor units)", notification["type"],
                 redacted_id(data["id"]),
                 data["state"], data.get("order_id"), data.get("total"), data.get("currency"))
        return web.json_response({"ok": True})

    async def list_events(request: web.Request) -> web.Response:
        return web.json_response(list(events))

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=256 * 1024)
    app.router.add_post("/webhook", receive)
    app.router.add_get("/events", list_events)
    app.router.add_get("/healthz", health)
    return app


async def serve(port: int, secret: bytes) -> None:
    runner = web.AppRunner(make_app(secret), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    log.info("demo webhook receiver on http://127.0.0.1:%d/webhook", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run_receiver(port: int, secret_file: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(serve(port, secret_file.read_text().strip().encode()))
