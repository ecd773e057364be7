"""A small synchronous JSON-RPC 2.0 client over HTTP (stdlib only), for the CLIs and scripts."""

from __future__ import annotations

import itertools
import json
import socket
import urllib.error
import urllib.request
import time
from typing import Any

from node.rpc.jsonrpc import RATE_LIMITED

RATE_LIMITED_ATTEMPTS_MAX = 4
RATE_LIMITED_WAIT_MS_MAX = 5_000


class RpcUnavailable(Exception):
    """The node could not be reached or answered with something that is not JSON-RPC."""


class RpcCallError(Exception):
    """The node answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data

    @property
    def rule(self) -> str | None:
        return self.data.get("rule") if isinstance(self.data, dict) else None


class RpcClient:
    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)

    def call(self, method: str, *params: Any) -> Any:
        """The call's result. A node that says "rate limited, retry after N ms" ran nothing of the call, so it
        is sent again after that wait, a bounded number of times."""
        for attempt in range(RATE_LIMITED_ATTEMPTS_MAX):
            try:
                return self._call_once(method, params)
            except RpcCallError as error:
                retry_after_ms = error.data.get("retry_after_ms") if isinstance(error.data, dict) else None
                if error.code != RATE_LIMITED or type(retry_after_ms) is not int \
                        or attempt + 1 == RATE_LIMITED_ATTEMPTS_MAX:
                    raise
                time.sleep(min(retry_after_ms, RATE_LIMITED_WAIT_MS_MAX) / 1000)
        raise AssertionError("unreachable")

    def _call_once(self, method: str, params: tuple[Any, ...]) -> Any:
        request_id = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": request_id}).encode()
        response = self._post(body)
        if not isinstance(response, dict) or response.get("id") not in (request_id, None):
            raise RpcUnavailable(f"{self.url} answered with something that is not a JSON-RPC response")
        if "error" in response:   # (id null: the request was refused whole, e.g. rate limited)
            error = response["error"] if isinstance(response["error"], dict) else {}
            raise RpcCallError(error.get("code", 0), error.get("message", "unknown error"), error.get("data"))
        if response.get("id") is None:
            raise RpcUnavailable(f"{self.url} answered with something that is not a JSON-RPC response")
        return response.get("result")

    def _post(self, body: bytes) -> Any:
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                text = answer.read()
        except urllib.error.HTTPError as error:
            text = error.read()
            if not text:
                raise RpcUnavailable(f"{self.url} answered HTTP {error.code}") from error
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise RpcUnavailable(f"cannot reach the node at {self.url}: {reason}") from error
        try:
            return json.loads(text)
        except ValueError as error:
            raise RpcUnavailable(f"{self.url} did not answer with JSON") from error
