"""The gateway's view of the chains: per region, several node RPC endpoints with health checks and failover.

A call goes to the region's preferred healthy node; if that node does not answer (refused,
timed out, not JSON-RPC), it is marked down and the next one is tried, so one stopped node
costs a request one failed attempt, not an error. A JSON-RPC error is the node's answer,
not a failure of the node, and is raised as `ChainError`. A health loop probes every node
each second (`node_status`, checking the chain id) and brings recovered nodes back.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gateway.config import Region
from node import crypto

log = logging.getLogger("paychain.gateway.nodes")

CALL_TIMEOUT_S = 5.0
HEALTH_TIMEOUT_S = 1.0
HEALTH_INTERVAL_S = 1.0
ALREADY_KNOWN_CODE = 2011
"""tx_send's `already_known`: the node holds the transaction in its mempool (a resend after failover)."""
ALREADY_COMMITTED_CODE = 2012
"""tx_send's `already_committed`."""


class NodeUnavailable(Exception):
    """No node of the region answered."""


class ChainError(Exception):
    """A node answered with a JSON-RPC error (a rejected transaction, an unknown order, …)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @property
    def rule(self) -> str | None:
        return self.data.get("rule") if isinstance(self.data, dict) else None


@dataclass
class Endpoint:
    url: str
    healthy: bool = True
    height: int = 0
    last_error: str = ""
    checked_at: float = 0.0

    @property
    def ws_url(self) -> str:
        base = self.url.rsplit("/", 1)[0]
        return "ws" + base.removeprefix("http") + "/ws"


@dataclass
class RegionClient:
    region: Region
    session: aiohttp.ClientSession
    endpoints: list[Endpoint] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.endpoints = [Endpoint(url) for url in self.region.nodes]

    @property
    def auth_headers(self) -> dict[str, str]:
        """The region's node token, if it has one: the nodes keep WebSocket slots for it and do not hold its
        calls to a single client's cost budget."""
        return {} if self.region.node_token is None else {"Authorization": f"Bearer {self.region.node_token}"}

    def ordered(self) -> list[Endpoint]:
        """Healthy endpoints first (in configured order), then the rest as a last resort."""
        return [e for e in self.endpoints if e.healthy] + [e for e in self.endpoints if not e.healthy]

    async def call(self, method: str, *params: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        errors = []
        for endpoint in self.ordered():
            try:
                return await self._call_one(endpoint, method, params, timeout_s)
            except NodeUnavailable as error:
                self._mark_down(endpoint, str(error))
                errors.append(str(error))
        raise NodeUnavailable(f"no node of region {self.region.name} answered: " + "; ".join(errors))

    async def send_transaction(self, signed: bytes, resend: bool) -> str:
        """tx_send with failover. A node that already holds the transaction in its mempool (sent before a
        failover) is success; one that already committed it is success only for a `resend` of our own."""
        try:
            return (await self.call("tx_send", signed.hex()))["hash"]
        except ChainError as error:
            if error.code == ALREADY_KNOWN_CODE or (resend and error.code == ALREADY_COMMITTED_CODE):
                return "0x" + crypto.hash_bytes(signed).hex()
            raise

    async def _call_one(self, endpoint: Endpoint, method: str, params: tuple, timeout_s: float) -> Any:
        request_id = next(self._ids)
        body = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": request_id}
        try:
            async with self.session.post(endpoint.url, json=body, headers=self.auth_headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError, ValueError) as error:
            raise NodeUnavailable(f"{endpoint.url}: {type(error).__name__} {error}".strip()) from error
        if not isinstance(answer, dict) or answer.get("id") not in (request_id, None) or (
                answer.get("id") is None and "error" not in answer):   # id null: the request was refused whole
            raise NodeUnavailable(f"{endpoint.url}: not a JSON-RPC answer")
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise ChainError(int(error.get("code", 0)), str(error.get("message", "unknown error")), error.get("data"))
        return answer.get("result")

    def _mark_down(self, endpoint: Endpoint, reason: str) -> None:
        if endpoint.healthy:
            log.warning("region %s: node %s is down (%s); failing over", self.region.name, endpoint.url, reason)
        endpoint.healthy = False
        endpoint.last_error = reason

    async def check_health(self) -> None:
        await asyncio.gather(*(self._check(endpoint) for endpoint in self.endpoints))

    async def _check(self, endpoint: Endpoint) -> None:
        endpoint.checked_at = time.time()
        try:
            status = await self._call_one(endpoint, "node_status", (), HEALTH_TIMEOUT_S)
        except (NodeUnavailable, ChainError) as error:
            self._mark_down(endpoint, str(error))
            return
        if not isinstance(status, dict) or status.get("chain_id") != self.region.chain_id:
            self._mark_down(endpoint, f"serves chain {status.get('chain_id') if isinstance(status, dict) else '?'}"
                                      f", not {self.region.chain_id}")
            return
        if not endpoint.healthy:
            log.info("region %s: node %s is back", self.region.name, endpoint.url)
        endpoint.healthy = True
        endpoint.height = int(status.get("height", 0))
        endpoint.last_error = ""

    def health(self) -> dict[str, Any]:
        return {"region": self.region.name, "chain_id": self.region.chain_id,
                "nodes": [{"url": e.url, "healthy": e.healthy, "height": e.height, "error": e.last_error}
                          for e in self.endpoints]}


class NodePool:
    """Every region's client, and the health loop that keeps their endpoint states current."""

    def __init__(self, regions: tuple[Region, ...], session: aiohttp.ClientSession) -> None:
        self.regions = {region.name: RegionClient(region, session) for region in regions}

    def __getitem__(self, name: str) -> RegionClient:
        return self.regions[name]

    async def run(self) -> None:
        while True:
            await asyncio.gather(*(client.check_health() for client in self.regions.values()))
            await asyncio.sleep(HEALTH_INTERVAL_S)
