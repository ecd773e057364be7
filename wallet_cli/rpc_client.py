"""A small synchronous JSON-RPC 2.0 client over HTTP (stdlib only), for the CLIs and scripts."""

from __future__ import annotations

import itertools
import json
import socket
import urllib.error
import urllib.request
from typing import Any


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
        request_id = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": request_id}).encode()
        response = self._post(body)
        if not isinstance(response, dict) or response.get("id") != request_id:
            raise RpcUnavailable(f"{self.url} answered with something that is not a JSON-RPC response")
        if "error" in response:
            error = response["error"]
            raise RpcCallError(error.get("code", 0), error.get("message", "unknown error"), error.get("data"))
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
