"""Webhooks (gateway/webhooks.py): the signature a receiver checks, and the sender's attempts against a real HTTP
receiver on 127.0.0.1: success, retry with backoff, giving up, a receiver that is down or slow."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway import egress, payments, webhooks
from gateway.store import GatewayStore
from gateway.webhooks import WebhookSender
from tests.unit.test_gateway_payments import WEBHOOK_SECRET, make_book, make_merchant, new_payment

BODY = b'{"id":"wh_1","type":"payment.paid"}'
SIGNED_AT = 1_800_000_000


# --- signatures ------------------------------------------------------------------------------------

def test_signature_round_trip():
    header = webhooks.sign(WEBHOOK_SECRET, SIGNED_AT, BODY)
    assert header.startswith(f"t={SIGNED_AT},v1=")
    assert webhooks.verify(WEBHOOK_SECRET, header, BODY, SIGNED_AT + 1)


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    digest = hmac.new(WEBHOOK_SECRET, f"{SIGNED_AT}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert webhooks.sign(WEBHOOK_SECRET, SIGNED_AT, BODY) == f"t={SIGNED_AT},v1={digest}"


def test_invalid_signature_of_a_tampered_body():
    header = webhooks.sign(WEBHOOK_SECRET, SIGNED_AT, BODY)
    assert not webhooks.verify(WEBHOOK_SECRET, header, BODY.replace(b"paid", b"refunded"), SIGNED_AT)


def test_invalid_signature_with_another_secret():
    header = webhooks.sign(b"another-secret-of-some-length", SIGNED_AT, BODY)
    assert not webhooks.verify(WEBHOOK_SECRET, header, BODY, SIGNED_AT)


def test_invalid_signature_with_a_changed_timestamp():
    digest = webhooks.sign(WEBHOOK_SECRET, SIGNED_AT, BODY).split(",v1=")[1]
    assert not webhooks.verify(WEBHOOK_SECRET, f"t={SIGNED_AT + 60},v1={digest}", BODY, SIGNED_AT + 60)


@pytest.mark.parametrize("age_s, accepted", [(300, True), (301, False), (86400, False), (-30, True), (-31, False),
                                             (-299, False)])
def test_invalid_stale_or_future_signature(age_s, accepted):
    """Up to 5 minutes old, or up to 30 s ahead of the receiver's clock (a timestamp far ahead would keep a
    captured notification replayable for longer)."""
    header = webhooks.sign(WEBHOOK_SECRET, SIGNED_AT, BODY)
    assert webhooks.verify(WEBHOOK_SECRET, header, BODY, SIGNED_AT + age_s) is accepted


@pytest.mark.parametrize("header", ["", "garbage", "t=,v1=", f"t=abc,v1={'0' * 64}", f"v1={'0' * 64}",
                                    f"t={SIGNED_AT}", f"t={SIGNED_AT},v1=", f"t={SIGNED_AT};v1={'0' * 64}",
                                    "t=" + "9" * 5000 + ",v1=00"])
def test_invalid_malformed_signature_header(header):
    assert webhooks.verify(WEBHOOK_SECRET, header, BODY, SIGNED_AT) is False


def test_invalid_signature_with_extra_parts():
    header = webhooks.sign(WEBHOOK_SECRET, SIGNED_AT, BODY)
    assert not webhooks.verify(WEBHOOK_SECRET, header + ",v0=00", BODY, SIGNED_AT)


@pytest.mark.parametrize("header", [f"t={SIGNED_AT},v1=é", f"t={SIGNED_AT},v1={'0' * 63}\u00ff"])
def test_invalid_non_ascii_signature_header(header):
    assert webhooks.verify(WEBHOOK_SECRET, header, BODY, SIGNED_AT) is False


# --- a real receiver -------------------------------------------------------------------------------

class Receiver:
    """An HTTP webhook receiver on 127.0.0.1 (port 0) that answers with `statuses` in turn (the last one repeats),
    checks each signature with `webhooks.verify` and keeps what it was sent."""

    def __init__(self, statuses: list[int], answer: str = "boom", hold: asyncio.Event | None = None) -> None:
        self.statuses = list(statuses)
        self.answer = answer
        self.hold = hold
        self.received: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append({"event_id": request.headers.get(webhooks.EVENT_ID_HEADER),
                              "content_type": request.headers.get("Content-Type"), "body": body,
                              "verified": webhooks.verify(WEBHOOK_SECRET,
                                                          request.headers.get(webhooks.SIGNATURE_HEADER, ""),
                                                          body, time.time())})
        if self.hold is not None:
            await self.hold.wait()
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return web.Response(status=status, text=self.answer)

    async def __aenter__(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.hold is not None:
            self.hold.set()
        await self.runner.cleanup()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


class Scene:
    """A store with one queued delivery (a checkout the merchant just canceled) for a merchant whose webhook is `url`."""

    def __init__(self, url: str, session: aiohttp.ClientSession, retry_base_s: float = 10.0,
                 merchant_known: bool = True, private_allowed: bool = True) -> None:
        """`private_allowed`: the receivers of these tests listen on 127.0.0.1, as a local network's does."""
        self.merchant = make_merchant(webhook_url=url)
        self.store = GatewayStore.in_memory()
        book = make_book(self.store, self.merchant)
        self.payment = book.transition(new_payment(self.merchant), payments.CANCELED)
        self.delivered: list[dict[str, Any]] = []
        self.sender = WebhookSender(self.store, {self.merchant.address_text: self.merchant} if merchant_known else {},
                                    session, retry_base_s, on_delivered=self.delivered.append,
                                    private_allowed=private_allowed)
        [(_, self.delivery_id)] = self.store.due_deliveries(int(time.time() * 1e6), 10)

    def due(self) -> list[tuple[bytes, str]]:
        """Every queued attempt, however far in the future."""
        return self.store.due_deliveries(10**19, 100)

    async def attempt_next(self) -> dict[str, Any]:
        [(key, delivery_id)] = self.due()
        await self.sender.attempt(key, delivery_id)
        return self.store.delivery(delivery_id)


def run(scenario) -> None:
    asyncio.run(scenario())


@pytest.mark.parametrize("status", [200, 204])
def test_2xx_answer_delivers(status):
    async def scenario():
        async with Receiver([status]) as receiver, aiohttp.ClientSession() as session:
            scene = Scene(receiver.url, session)
            delivery = await scene.attempt_next()
            assert (delivery["state"], delivery["attempts"], delivery["next_attempt_at"]) == ("delivered", 1, None)
            assert delivery["delivered_at"] is not None
            [entry] = delivery["log"]
            assert (entry["status"], entry["error"]) == (status, None)
            assert scene.due() == [] and scene.delivered == [delivery]
            [request] = receiver.received
            assert request["event_id"] == scene.delivery_id and request["verified"]
            assert request["content_type"] == "application/json"
            body = json.loads(request["body"])
            assert (body["id"], body["type"]) == (scene.delivery_id, "payment.canceled")
            assert (body["data"]["id"], body["data"]["state"]) == (scene.payment["id"], payments.CANCELED)
    run(scenario)


def test_error_answer_is_retried_with_backoff():
    async def scenario():
        async with Receiver([500]) as receiver, aiohttp.ClientSession() as session:
            scene = Scene(receiver.url, session, retry_base_s=10.0)
            for attempt, delay_s in [(1, 10.0), (2, 20.0), (3, 40.0)]:
                before = time.time()
                delivery = await scene.attempt_next()
                after = time.time()
                assert (delivery["state"], delivery["attempts"], len(delivery["log"])) == ("pending", attempt, attempt)
                assert before + delay_s <= delivery["next_attempt_at"] <= after + delay_s
                assert delivery["log"][-1]["status"] == 500 and delivery["log"][-1]["error"] == "HTTP 500 Internal Server Error"
                [(key, _)] = scene.due()  # the old entry is gone; the new one is due at next_attempt_at
                due_us = int(delivery["next_attempt_at"] * 1e6)
                assert scene.store.due_deliveries(due_us - 1, 10) == [] and scene.store.due_deliveries(due_us, 10)
            assert scene.delivered == []
            assert {request["event_id"] for request in receiver.received} == {scene.delivery_id}
            assert all(request["verified"] for request in receiver.received)
    run(scenario)


def test_retry_delay_is_capped():
    async def scenario():
        async with Receiver([503]) as receiver, aiohttp.ClientSession() as session:
            scene = Scene(receiver.url, session, retry_base_s=1000.0)
            for _ in range(3):  # 1000 s, 2000 s, then 4000 s capped to an hour
                before = time.time()
                delivery = await scene.attempt_next()
            assert before + webhooks.RETRY_DELAY_S_MAX <= delivery["next_attempt_at"] <= time.time() + 3600.0
    run(scenario)


def test_delivery_fails_after_the_last_attempt():
    async def scenario():
        async with Receiver([500]) as receiver, aiohttp.ClientSession() as session:
            scene = Scene(receiver.url, session)
            for _ in range(webhooks.ATTEMPTS_MAX):
                delivery = await scene.attempt_next()
            assert (delivery["state"], delivery["attempts"]) == ("failed", webhooks.ATTEMPTS_MAX)
            assert delivery["next_attempt_at"] is None and delivery["delivered_at"] is None
            assert len(delivery["log"]) == webhooks.ATTEMPT_LOG_ENTRIES_MAX and scene.due() == []
            assert len(receiver.received) == webhooks.ATTEMPTS_MAX
            assert {request["event_id"] for request in receiver.received} == {scene.delivery_id}
    run(scenario)


def test_retry_after_failures_can_still_deliver():
    async def scenario():
        async with Receiver([500, 502, 200]) as receiver, aiohttp.ClientSession() as session:
            scene = Scene(receiver.url, session)
            states = [(await scene.attempt_next())["state"] for _ in range(3)]
            assert states == ["pending", "pending", "delivered"]
            delivery = scene.store.delivery(scene.delivery_id)
            assert [entry["status"] for entry in delivery["log"]] == [500, 502, 200] and scene.due() == []
            assert [request["event_id"] for request in receiver.received] == [scene.delivery_id] * 3
            assert scene.delivered == [delivery]
    run(scenario)


def test_the_log_keeps_the_status_line_never_the_receivers_answer():
    async def scenario():
        async with Receiver([500], answer="internal reply " * 100) as receiver, aiohttp.ClientSession() as session:
            delivery = await Scene(receiver.url, session).attempt_next()
            assert delivery["log"][0]["error"] == "HTTP 500 Internal Server Error"
    run(scenario)


class Redirector(Receiver):
    """A receiver that answers 307 to `target` (where a merchant would point an internal service)."""

    def __init__(self, target: str) -> None:
        super().__init__([307])
        self.target = target

    async def handle(self, request: web.Request) -> web.Response:
        await super().handle(request)
        raise web.HTTPTemporaryRedirect(self.target)


def test_a_redirect_is_not_followed():
    async def scenario():
        async with Receiver([200], answer="internal secret") as internal, Redirector(internal.url) as redirector, \
                aiohttp.ClientSession() as session:
            delivery = await Scene(redirector.url, session).attempt_next()
            entry = delivery["log"][0]
            assert entry["status"] == 307 and "redirects are not followed" in entry["error"]
            assert delivery["state"] == "pending" and internal.received == []
            assert "secret" not in json.dumps(delivery)
    run(scenario)


def test_private_targets_are_refused_unless_allowed():
    """An IP literal is refused before any connection; a name is refused once it resolves to a private address."""
    async def scenario():
        async with Receiver([200]) as receiver, egress.webhook_session(4, private_allowed=False) as session:
            by_name = receiver.url.replace("127.0.0.1", "localhost")
            for url in (receiver.url, by_name):
                delivery = await Scene(url, session, private_allowed=False).attempt_next()
                entry = delivery["log"][0]
                assert entry["status"] is None and delivery["state"] == "pending", entry
                assert "not a public address" in entry["error"] or "no public address" in entry["error"], entry
            assert receiver.received == []
        async with Receiver([200]) as receiver, egress.webhook_session(4, private_allowed=True) as session:
            delivery = await Scene(receiver.url.replace("127.0.0.1", "localhost"), session).attempt_next()
            assert delivery["state"] == "delivered" and len(receiver.received) == 1
    run(scenario)


def test_receiver_down_is_logged_and_retried():
    async def scenario():
        async with aiohttp.ClientSession() as session:
            scene = Scene(closed_port_url(), session)
            delivery = await scene.attempt_next()
            [entry] = delivery["log"]
            assert entry["status"] is None and entry["error"].startswith("ClientConnectorError")
            assert len(entry["error"]) <= webhooks.RESPONSE_EXCERPT_CHARS_MAX
            assert (delivery["state"], delivery["attempts"]) == ("pending", 1) and len(scene.due()) == 1
    run(scenario)


def test_slow_receiver_times_out(monkeypatch):
    monkeypatch.setattr(webhooks, "ATTEMPT_TIMEOUT_S", 0.2)

    async def scenario():
        async with Receiver([200], hold=asyncio.Event()) as receiver, aiohttp.ClientSession() as session:
            delivery = await Scene(receiver.url, session).attempt_next()
            [entry] = delivery["log"]
            assert entry["status"] is None and "Timeout" in entry["error"]
            assert delivery["state"] == "pending" and len(receiver.received) == 1
    run(scenario)


def test_delivery_of_a_merchant_removed_from_the_config_is_dropped():
    async def scenario():
        async with Receiver([200]) as receiver, aiohttp.ClientSession() as session:
            scene = Scene(receiver.url, session, merchant_known=False)
            delivery = await scene.attempt_next()
            assert (delivery["state"], delivery["attempts"]) == ("pending", 0)
            assert scene.due() == [] and receiver.received == []
    run(scenario)


def test_stale_queue_entry_of_a_delivered_delivery_sends_nothing():
    async def scenario():
        async with Receiver([200]) as receiver, aiohttp.ClientSession() as session:
            scene = Scene(receiver.url, session)
            [(key, delivery_id)] = scene.due()
            await scene.sender.attempt(key, delivery_id)
            scene.store.write([(key, delivery_id)])  # the same entry again, e.g. written twice before a crash
            await scene.sender.attempt(key, delivery_id)
            assert len(receiver.received) == 1 and scene.due() == []
            assert scene.store.delivery(delivery_id)["attempts"] == 1
    run(scenario)


def test_a_hanging_receiver_does_not_hold_up_another_merchants_webhooks():
    async def scenario():
        async with Receiver([200], hold=asyncio.Event()) as stuck, Receiver([200]) as quick, \
                aiohttp.ClientSession() as session:
            slow_merchant, fast_merchant = make_merchant("slow", stuck.url), make_merchant("fast", quick.url)
            store = GatewayStore.in_memory()
            merchants = {m.address_text: m for m in (slow_merchant, fast_merchant)}
            for _ in range(webhooks.DELIVERIES_IN_FLIGHT_MAX):  # more than enough to fill every slot
                make_book(store, slow_merchant).transition(new_payment(slow_merchant), payments.CANCELED)
            make_book(store, fast_merchant).transition(new_payment(fast_merchant), payments.CANCELED)
            delivered: list[dict[str, Any]] = []
            sender = WebhookSender(store, merchants, session, 10.0, on_delivered=delivered.append, private_allowed=True)
            task = asyncio.create_task(sender.run())
            try:
                for _ in range(100):
                    if delivered:
                        break
                    await asyncio.sleep(0.02)
                assert [d["merchant"] for d in delivered] == [fast_merchant.address_text]
                assert len(stuck.received) == webhooks.MERCHANT_IN_FLIGHT_MAX  # the rest wait their turn
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    run(scenario)
