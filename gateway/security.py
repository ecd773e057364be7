"""HTTP protections shared by every gateway route: errors as JSON, security headers, rate limits,
merchant authentication (API key or browser session) and CSRF checks.

- Merchant API: `Authorization: Bearer <api key>`; the gateway stores only the key's SHA-256.
  The merchant's analytics page uses a session instead: log in with the API key once, get an
  HttpOnly, SameSite=Strict session cookie; every state-changing request of a session must also
  carry the session's CSRF token in `X-CSRF-Token`.
- Shopper pages: a CSRF cookie is set with the page and the page's scripts echo it in
  `X-CSRF-Token` (double submit); POSTs must be `application/json`.
- Token buckets per API key and per client address; bodies over `REQUEST_BYTES_MAX` are refused.
  Behind a reverse proxy listed in `trusted_proxies`, the client address and the scheme come from its
  X-Forwarded-For and X-Forwarded-Proto headers (from anyone else, those headers are ignored).
- Logs never carry keys, passwords, API keys or webhook secrets: only method, path and status.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway.config import GatewayConfig, Merchant, hash_api_key
from gateway.payments import PaymentError
from gateway.redaction import redacted_path

log = logging.getLogger("paychain.gateway.http")

REQUEST_BYTES_MAX = 64 * 1024
CONNECTIONS_MAX = 1_024
"""Open HTTP connections the gateway holds; beyond it new ones are closed on arrival (node/rpc/connections.py)."""
CONNECTIONS_PER_CLIENT_MAX = 128
"""Open HTTP connections from one client address (trusted proxies have no quota: they limit their own)."""
REQUEST_HEADER_S = 10.0
"""From a request's first byte to its complete headers (slowloris)."""
CONNECTION_IDLE_S = 30.0
"""An open connection with no request in it is closed after this."""
REQUEST_BODY_S = 30.0
"""From a request's headers to the last byte of its body."""
MERCHANT_REQUESTS_PER_S = 2_000.0
MERCHANT_BURST = 4_000.0
PUBLIC_REQUESTS_PER_S = 50.0
PUBLIC_BURST = 200.0
RATE_BUCKETS_MAX = 100_000
SESSIONS_MAX = 10_000
SESSIONS_PER_MERCHANT_MAX = 20
"""A merchant's oldest session ends when it opens more (so one merchant cannot push out everyone else's)."""
SESSION_TTL_S = 8 * 3600.0
CSRF_COOKIE = "paychain_csrf"
SESSION_COOKIE = "paychain_session"
CSRF_HEADER = "X-CSRF-Token"

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
                           "base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                    "Cross-Origin-Opener-Policy": "same-origin", "Cache-Control": "no-store"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@web.middleware
async def errors_and_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Expected failures become JSON errors with a stable code; every answer gets the security headers."""
    try:
        response = await handler(request)
    except PaymentError as error:
        response = error_response(error.status, error.code, error.message)
    except web.HTTPRequestEntityTooLarge:
        response = error_response(413, "request_too_large", f"request bodies are limited to {REQUEST_BYTES_MAX} bytes")
    except web.HTTPException as error:
        if error.status >= 400:
            code = error.reason.lower().replace(" ", "_")
            kept = {name: value for name, value in error.headers.items() if name in ("Allow", "Retry-After")}
            response = error_response(error.status, code, error.text or error.reason, kept)
        else:
            raise
    except Exception:
        log.exception("internal error on %s %s", request.method, redacted_path(request.path))
        response = error_response(500, "internal_error", "the gateway failed to handle this request")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class TokenBuckets:
    """Rate limits by key (an API key's hash, a client address); the oldest keys are forgotten first."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: OrderedDict[Any, tuple[float, float]] = OrderedDict()

    def allow(self, key: Any, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate_per_s)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > RATE_BUCKETS_MAX:
            self._buckets.popitem(last=False)
        return allowed


@dataclass
class Session:
    merchant: Merchant
    csrf_token: str
    expires_at: float


class Guard:
    """Who is calling: merchants by API key or session, shoppers by CSRF token; and how often."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.merchant_rate = TokenBuckets(MERCHANT_REQUESTS_PER_S, MERCHANT_BURST)
        self.public_rate = TokenBuckets(PUBLIC_REQUESTS_PER_S, PUBLIC_BURST)
        self.sessions: OrderedDict[str, Session] = OrderedDict()

    def merchant_for(self, request: web.Request) -> Merchant:
        """The merchant calling, from `Authorization: Bearer <key>` or a session cookie (+ CSRF for changes)."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            merchant = self.config.merchants_by_key_hash.get(hash_api_key(header[len("Bearer "):].strip()))
            if merchant is None:
                raise PaymentError(401, "unauthorized", "the API key is not valid")
        else:
            session = self._session(request)
            if session is None:
                raise PaymentError(401, "unauthorized",
                                   "send the merchant API key as 'Authorization: Bearer <key>'")
            if request.method not in ("GET", "HEAD") and not same_token(request.headers.get(CSRF_HEADER),
                                                                         session.csrf_token):
                raise PaymentError(403, "csrf_failed", f"a session request that changes something needs {CSRF_HEADER}")
            merchant = session.merchant
        if not self.merchant_rate.allow(merchant.api_key_sha256):
            raise PaymentError(429, "rate_limited", "too many requests for this API key; slow down")
        return merchant

    def check_public(self, request: web.Request) -> None:
        """Shopper pages' API: a rate limit per client address, and for POSTs JSON plus the CSRF double submit."""
        if not self.public_rate.allow(client_address(request)):
            raise PaymentError(429, "rate_limited", "too many requests from this address; slow down")
        if request.method == "POST":
            if request.content_type != "application/json":
                raise PaymentError(415, "unsupported_media_type", "send the request body as application/json")
            if not same_token(request.headers.get(CSRF_HEADER), request.cookies.get(CSRF_COOKIE)):
                raise PaymentError(403, "csrf_failed", "the page's CSRF token is missing or stale; reload the page")

    def login(self, api_key: str) -> tuple[str, Session]:
        merchant = self.config.merchants_by_key_hash.get(hash_api_key(api_key))
        if merchant is None:
            raise PaymentError(401, "unauthorized", "the API key is not valid")
        own = [key for key, session in self.sessions.items() if session.merchant.address == merchant.address]
        for key in own[:max(0, len(own) - SESSIONS_PER_MERCHANT_MAX + 1)]:
            del self.sessions[key]
        session_id = secrets.token_urlsafe(32)
        session = Session(merchant, secrets.token_urlsafe(24), time.time() + SESSION_TTL_S)
        self.sessions[session_id] = session
        while len(self.sessions) > SESSIONS_MAX:
            self.sessions.popitem(last=False)
        return session_id, session

    def logout(self, request: web.Request) -> None:
        self.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)

    def _session(self, request: web.Request) -> Session | None:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if session is None or session.expires_at < time.time():
            return None
        return session

    def session_of(self, request: web.Request) -> Session | None:
        return self._session(request)


def client_address(request: web.BaseRequest) -> str:
    """Who sent the request: the peer's address, or behind a trusted proxy the last address it forwarded."""
    remote = request.remote or ""
    # a request the HTTP parser refused is a bare BaseRequest, with no app (and so no trusted proxies)
    proxies = request.app.get("trusted_proxies", frozenset()) if isinstance(request, web.Request) else frozenset()
    if remote not in proxies:
        return remote
    forwarded = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    return forwarded[-1] if forwarded else remote


def is_secure(request: web.BaseRequest) -> bool:
    """Did the browser use HTTPS (directly, or to a trusted proxy that says so)?"""
    if request.secure:
        return True
    return (request.remote or "") in request.app.get("trusted_proxies", frozenset()) and \
        request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of two header or cookie values. aiohttp hands over header bytes that are not
    UTF-8 as lone surrogates, so they are encoded back to the bytes received (never an error, never equal to
    a token we made)."""
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                                  expected.encode("utf-8", "surrogateescape"))


CSRF_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32}$")


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_token_of(request: web.Request) -> str:
    """The browser's CSRF cookie if it is one we could have made, else a new token (a cookie planted by a
    neighbouring site is never echoed into a page)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    return token if CSRF_TOKEN_PATTERN.match(token) else new_csrf_token()


def set_cookie(response: web.StreamResponse, name: str, value: str, secure: bool, max_age_s: int) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=secure, max_age=max_age_s, path="/")




class AccessLogger(AbstractAccessLogger):
    """One line per request: client, method, path, status, time. Payment ids are cut to their first characters
    (the id is the secret part of a checkout link); no headers, no query strings, no bodies."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_s: float) -> None:
        path = redacted_path(request.path)
        self.logger.info("%s %s %s %d %.1fms", client_address(request), request.method, path, response.status,
                         time_s * 1000)
