"""The gateway's wired parts, handed to every route handler (built once by `server.bootstrap`)."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from gateway.chain import ChainView, Signer
from gateway.config import GatewayConfig
from gateway.nodes import ChainError, NodePool, NodeUnavailable
from gateway.payments import PaymentBook
from gateway.security import Guard
from gateway.store import GatewayStore
from gateway.webhooks import WebhookSender


@dataclass
class Services:
    config: GatewayConfig
    store: GatewayStore
    book: PaymentBook
    nodes: NodePool
    chains: dict[str, ChainView]
    """By region name."""
    gateway_signer: Signer
    merchant_signers: dict[str, Signer]
    """By merchant address text: merchants who delegated shipping, canceling and refunding."""
    guard: Guard
    webhooks: WebhookSender
    session: aiohttp.ClientSession

    def chain(self, region: str) -> ChainView:
        return self.chains[region]

    async def asset_decimals(self) -> dict[str, int]:
        """Digits after the point of every asset of every network (for showing amounts); a network whose
        nodes do not answer adds none."""
        decimals: dict[str, int] = {}
        for chain in self.chains.values():
            try:
                decimals.update((await chain.params()).decimals)
            except (NodeUnavailable, ChainError):
                continue
        return decimals
