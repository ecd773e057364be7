"""HTTP protections (gateway/security.py): token-bucket rate limits, merchant API keys and sessions, CSRF checks."""

from __future__ import annotations

import logging
import types

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway import security
from gateway.config import parse_gateway_config
from gateway.payments import PaymentError
from gateway.security import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, Guard, TokenBuckets, same_token
from tests.unit.test_gateway_config import MERCHANT_KEYS, gateway_document


class Clock:
    """Stands in for the `time` module inside gateway/security.py."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(1_800_000_000.0)
    monkeypatch.setattr(security, "time", fake)
    return fake


@pytest.fixture
def guard(tmp_path):
    return Guard(parse_gateway_config(gateway_document(tmp_path), tmp_path))


def request(method: str = "GET", headers: dict[str, str] | None = None, session_id: str | None = None,
            csrf_cookie: str | None = None):
    headers = dict(headers or {})
    cookies = [f"{SESSION_COOKIE}={session_id}"] if session_id else []
    cookies += [f"{CSRF_COOKIE}={csrf_cookie}"] if csrf_cookie else []
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    return make_mocked_request(method, "/v1/payments", headers=headers)


def refused_with(status: int, code: str, call, *args) -> None:
    with pytest.raises(PaymentError) as raised:
        call(*args)
    assert (raised.value.status, raised.value.code) == (status, code)


# --- token buckets ---------------------------------------------------------------------------------

def test_bucket_allows_a_burst_then_refuses():
    buckets = TokenBuckets(rate_per_s=1.0, burst=3.0)
    assert [buckets.allow("k", now=100.0) for _ in range(4)] == [True, True, True, False]


def test_bucket_refills_at_its_rate():
    buckets = TokenBuckets(rate_per_s=2.0, burst=3.0)
    for _ in range(3):
        buckets.allow("k", now=100.0)
    assert not buckets.allow("k", now=100.25)  # half a token
    assert buckets.allow("k", now=100.5)       # one token
    assert not buckets.allow("k", now=100.5)


def test_bucket_refill_is_capped_at_the_burst():
    buckets = TokenBuckets(rate_per_s=10.0, burst=3.0)
    buckets.allow("k", now=0.0)
    assert [buckets.allow("k", now=1000.0) for _ in range(4)] == [True, True, True, False]


def test_buckets_are_per_key():
    buckets = TokenBuckets(rate_per_s=1.0, burst=1.0)
    assert buckets.allow("a", now=0.0) and not buckets.allow("a", now=0.0)
    assert buckets.allow("b", now=0.0)


def test_number_of_buckets_is_bounded_and_the_least_recent_is_forgotten():
    buckets = TokenBuckets(rate_per_s=0.001, burst=1.0)
    assert buckets.allow("busy", now=0.0) and not buckets.allow("busy", now=0.0)
    assert buckets.allow("recent", now=0.0)
    for index in range(security.RATE_BUCKETS_MAX - 2):
        buckets.allow(index, now=0.0)
    assert not buckets.allow("recent", now=0.0)  # still remembered: empty; this use makes it the newest
    buckets.allow("one-more", now=0.0)           # one key too many: the least recently used goes
    assert buckets.allow("busy", now=0.0)        # forgotten, so it starts again with a full bucket
    assert not buckets.allow("recent", now=0.0)


# --- merchants: API keys and sessions --------------------------------------------------------------

def test_bearer_api_key_identifies_the_merchant(guard):
    merchant = guard.merchant_for(request("POST", {"Authorization": "Bearer merchant-api-key"}))
    assert merchant.address == MERCHANT_KEYS.address


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Bearer "},
                                     {"Authorization": "merchant-api-key"}, {"Authorization": "Basic bWVyY2hhbnQ="}])
def test_invalid_api_key(guard, headers):
    refused_with(401, "unauthorized", guard.merchant_for, request("GET", headers))


def test_login_with_the_api_key_opens_a_session(guard):
    session_id, session = guard.login("merchant-api-key")
    assert session.merchant.address == MERCHANT_KEYS.address and session.csrf_token
    assert guard.session_of(request(session_id=session_id)) is session
    assert guard.merchant_for(request("GET", session_id=session_id)).address == MERCHANT_KEYS.address


def test_invalid_login_key(guard):
    refused_with(401, "unauthorized", guard.login, "wrong-key")
    assert guard.sessions == {}


def test_each_login_gets_its_own_session_and_token(guard):
    first_id, first = guard.login("merchant-api-key")
    second_id, second = guard.login("merchant-api-key")
    assert first_id != second_id and first.csrf_token != second.csrf_token


def test_invalid_unknown_session(guard):
    guard.login("merchant-api-key")
    assert guard.session_of(request(session_id="made-up")) is None
    refused_with(401, "unauthorized", guard.merchant_for, request("GET", session_id="made-up"))


def test_session_change_needs_its_csrf_token(guard):
    session_id, session = guard.login("merchant-api-key")
    refused_with(403, "csrf_failed", guard.merchant_for, request("POST", session_id=session_id))
    refused_with(403, "csrf_failed", guard.merchant_for,
                 request("POST", {CSRF_HEADER: "not-the-token"}, session_id=session_id))
    other_id, other = guard.login("merchant-api-key")
    refused_with(403, "csrf_failed", guard.merchant_for,
                 request("POST", {CSRF_HEADER: other.csrf_token}, session_id=session_id))
    merchant = guard.merchant_for(request("POST", {CSRF_HEADER: session.csrf_token}, session_id=session_id))
    assert merchant.address == MERCHANT_KEYS.address


def test_session_expires(guard, clock):
    session_id, _ = guard.login("merchant-api-key")
    clock.now += security.SESSION_TTL_S
    assert guard.session_of(request(session_id=session_id)) is not None
    clock.now += 1
    assert guard.session_of(request(session_id=session_id)) is None
    refused_with(401, "unauthorized", guard.merchant_for, request("GET", session_id=session_id))


def test_logout_ends_the_session(guard):
    session_id, _ = guard.login("merchant-api-key")
    guard.logout(request(session_id=session_id))
    assert guard.session_of(request(session_id=session_id)) is None


def test_number_of_sessions_is_bounded(guard, monkeypatch):
    monkeypatch.setattr(security, "SESSIONS_PER_MERCHANT_MAX", security.SESSIONS_MAX + 10)
    first_id, _ = guard.login("merchant-api-key")
    for _ in range(security.SESSIONS_MAX):
        last_id, _ = guard.login("merchant-api-key")
    assert len(guard.sessions) == security.SESSIONS_MAX
    assert guard.session_of(request(session_id=first_id)) is None
    assert guard.session_of(request(session_id=last_id)) is not None


def test_one_merchant_cannot_push_out_the_others_sessions(guard):
    first_id, _ = guard.login("merchant-api-key")
    for _ in range(security.SESSIONS_PER_MERCHANT_MAX):
        last_id, _ = guard.login("merchant-api-key")
    assert len(guard.sessions) == security.SESSIONS_PER_MERCHANT_MAX
    assert guard.session_of(request(session_id=first_id)) is None
    assert guard.session_of(request(session_id=last_id)) is not None


def test_merchant_requests_are_rate_limited(guard, clock):
    calls = request("GET", {"Authorization": "Bearer merchant-api-key"})
    for _ in range(int(security.MERCHANT_BURST)):
        guard.merchant_for(calls)
    refused_with(429, "rate_limited", guard.merchant_for, calls)
    clock.now += 1.0
    assert guard.merchant_for(calls).address == MERCHANT_KEYS.address


# --- shopper pages ---------------------------------------------------------------------------------

def test_shopper_post_with_json_and_matching_csrf_passes(guard):
    guard.check_public(request("POST", {"Content-Type": "application/json", CSRF_HEADER: "token-1"},
                               csrf_cookie="token-1"))
    guard.check_public(request("GET"))


def test_invalid_shopper_post_not_json(guard):
    refused_with(415, "unsupported_media_type", guard.check_public,
                 request("POST", {"Content-Type": "application/x-www-form-urlencoded", CSRF_HEADER: "token-1"},
                         csrf_cookie="token-1"))


@pytest.mark.parametrize("header, cookie", [(None, "token-1"), ("token-1", None), ("token-2", "token-1"), (None, None)])
def test_invalid_shopper_post_csrf(guard, header, cookie):
    headers = {"Content-Type": "application/json"} | ({CSRF_HEADER: header} if header else {})
    refused_with(403, "csrf_failed", guard.check_public, request("POST", headers, csrf_cookie=cookie))


def test_shopper_requests_are_rate_limited(guard, clock):
    calls = request("GET")  # one client address
    for _ in range(int(security.PUBLIC_BURST)):
        guard.check_public(calls)
    refused_with(429, "rate_limited", guard.check_public, calls)
    clock.now += 1.0
    guard.check_public(calls)


@pytest.mark.parametrize("given, expected, same", [
    ("token", "token", True), ("token", "tokem", False), ("token", "token2", False), (None, "token", False),
    ("token", None, False), ("", "", False), (None, None, False), ("é", "é", True), ("é", "e", False),
    ("\udcff" * 32, "token", False), ("token", "\udcfe", False), ("\udcff", "\udcff", True)])   # non-UTF-8 bytes
def test_same_token(given, expected, same):
    assert same_token(given, expected) is same


# --- behind a reverse proxy ------------------------------------------------------------------------

def proxied(remote: str, headers: dict[str, str], trusted: frozenset[str]):
    from unittest import mock
    app = {"trusted_proxies": trusted}
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (remote, 40000) if name == "peername" else default
    return make_mocked_request("GET", "/checkout/pm_x", headers=headers, app=app, transport=transport)


def test_a_trusted_proxy_names_the_client_and_the_scheme():
    request = proxied("10.0.0.5", {"X-Forwarded-For": "203.0.113.9, 198.51.100.7",
                                   "X-Forwarded-Proto": "https"}, frozenset({"10.0.0.5"}))
    assert security.client_address(request) == "198.51.100.7"  # the hop the proxy itself saw
    assert security.is_secure(request)


def test_forwarded_headers_from_anyone_else_are_ignored():
    request = proxied("192.0.2.66", {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"},
                      frozenset({"10.0.0.5"}))
    assert security.client_address(request) == "192.0.2.66"
    assert not security.is_secure(request)


def test_a_trusted_proxy_without_forwarded_headers_is_the_client():
    request = proxied("10.0.0.5", {}, frozenset({"10.0.0.5"}))
    assert security.client_address(request) == "10.0.0.5" and not security.is_secure(request)


def test_the_access_log_records_requests_the_http_parser_refused(caplog):
    """aiohttp logs a request its parser refused as a bare BaseRequest, with no app: the logger once raised
    on every such request (and left it out of the access log)."""
    refused = types.SimpleNamespace(remote="203.0.113.9", method="GET", path="/checkout/pm_abcdefghijklmnop",
                                    headers={})
    logger = logging.getLogger("test.access")
    caplog.set_level(logging.INFO, logger="test.access")
    security.AccessLogger(logger, "").log(refused, web.Response(status=400), 0.001)
    assert "203.0.113.9 GET /checkout/pm_abcd… 400" in caplog.text and "efghijkl" not in caplog.text
