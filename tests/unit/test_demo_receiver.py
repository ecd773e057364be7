"""The demo merchant's webhook receiver: the verification recipe merchants copy (issue 12, replay)."""

from __future__ import annotations

import json
import logging
import time

import aiohttp
from aiohttp import web

from gateway import demo_receiver, webhooks
from tests.support import run_async

SECRET = b"a-secret-for-the-demo-receiver"


async def post(session: aiohttp.ClientSession, url: str, body: bytes, signed_at: int, event_header: str) -> int:
    headers = {webhooks.SIGNATURE_HEADER: webhooks.sign(SECRET, signed_at, body),
               webhooks.EVENT_ID_HEADER: event_header, "Content-Type": "application/json"}
    async with session.post(url, data=body, headers=headers) as response:
        answer = await response.json()
        return response.status if not answer.get("duplicate") else 208


@run_async
async def test_a_replayed_notification_is_a_duplicate_whatever_its_event_header(caplog) -> None:
    caplog.set_level(logging.INFO)
    runner = web.AppRunner(demo_receiver.make_app(SECRET), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhook"
    payment_id = "pm_" + "s3cr3t" * 4
    body = json.dumps({"id": "wh_first", "type": "payment.paid", "created_at": time.time(),
                       "data": {"id": payment_id, "state": "paid"}}).encode()
    try:
        async with aiohttp.ClientSession() as session:
            now = int(time.time())
            assert await post(session, url, body, now, "wh_first") == 200
            assert await post(session, url, body, now, "wh_other") == 208   # a new header does not make it new
            assert await post(session, url, body, now + 1, "") == 208       # nor a fresh signature time
            assert await post(session, url, body, now + 299, "wh_x") == 401  # far ahead of the clock
            async with session.get(url.replace("/webhook", "/events")) as response:
                assert len(await response.json()) == 1
    finally:
        await runner.cleanup()
    assert payment_id not in caplog.text and "pm_s3cr" in caplog.text
