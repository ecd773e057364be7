"""A small HTTP client for gateway tests: the merchant API with its key, and a shopper that pays the way
the checkout page does (prepare → sign the prepared bytes locally → submit), stdlib only."""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from node import crypto, encoding, limits
from node.rpc.views import signing_domain_from_json
from node.transactions import Transaction, sign_transaction


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def _open(opener: urllib.request.OpenerDirector, request: urllib.request.Request) -> Answer:
    try:
        with opener.open(request, timeout=30) as response:
            raw = response.read()
            status, headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, headers = error.read(), error.code, dict(error.headers)
    content_type = headers.get("Content-Type", "")
    body = json.loads(raw) if raw and content_type.startswith("application/json") else raw.decode(errors="replace")
    return Answer(status, body, headers)


@dataclass
class Merchant:
    url: str
    api_key: str

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json",
                       **(headers or {})}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        return _open(urllib.request.build_opener(), request)

    def create(self, body: dict[str, Any], key: str | None = None) -> Answer:
        return self.call("POST", "/v1/payments", body, {"Idempotency-Key": key} if key else None)

    def payment(self, payment_id: str) -> dict[str, Any]:
        answer = self.call("GET", f"/v1/payments/{payment_id}")
        assert answer.status == 200, answer
        return answer.body

    def wait_state(self, payment_id: str, states: tuple[str, ...], timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            payment = self.payment(payment_id)
            if payment["state"] in states:
                return payment
            if time.monotonic() > deadline:
                raise TimeoutError(f"payment {payment_id} is {payment['state']}, not {states}, after {timeout_s} s")
            time.sleep(0.1)


@dataclass
class Shopper:
    """A browser-like client: a cookie jar, the page's CSRF token, and a key that never leaves it."""

    url: str
    keys: crypto.KeyPair
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self) -> None:
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def open_page(self, path: str) -> Answer:
        return _open(self.opener, urllib.request.Request(self.url + path))

    @property
    def csrf(self) -> str:
        return next((cookie.value for cookie in self.jar if cookie.name == "paychain_csrf"), "")

    def post(self, path: str, body: Any, csrf: str | None = None) -> Answer:
        headers = {"Content-Type": "application/json", "X-CSRF-Token": self.csrf if csrf is None else csrf}
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers=headers)
        return _open(self.opener, request)

    def get(self, path: str) -> Answer:
        return _open(self.opener, urllib.request.Request(self.url + path))

    def sign(self, prepared: dict[str, Any]) -> str:
        """What the page does with the prepared bytes, done with the node's own signing code: it signs for the
        network (chain id and genesis hash) the gateway names with them."""
        transaction = encoding.decode(Transaction, bytes.fromhex(prepared["payload"]), limits.tx_bytes_max)
        return sign_transaction(self.keys, signing_domain_from_json(prepared), transaction).hex()

    def pay(self, payment_id: str, product_id: str) -> Answer:
        """Open the checkout, prepare, sign locally, submit; the submit's answer."""
        page = self.open_page(f"/checkout/{payment_id}")
        assert page.status == 200, page
        prepared = self.post(f"/api/checkout/{payment_id}/prepare",
                             {"public_key": self.keys.public_key.hex(), "product_id": product_id})
        if prepared.status != 200:
            return prepared
        return self.post(f"/api/checkout/{payment_id}/submit", {"signed": self.sign(prepared.body)})
