"""What the gateway reads from and writes to a region's chain: parameters, catalog, transactions.

Shoppers sign in their browser, so for them the gateway only *prepares* the canonical
transaction bytes (the page signs exactly those, and `is_prepared` makes sure the signed
transaction is the one prepared). Transactions the gateway signs itself — recharge posting
with its own key, and ship/cancel/refund for merchants who delegated their key — go through a
`Signer`, which serialises each key's nonces so concurrent calls do not collide.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gateway.nodes import ChainError, RegionClient
from node import crypto, encoding
from node.contracts import system
from node.rpc.views import signing_domain_from_json
from node.transactions import (Body, CallContract, Envelope, InvalidTransaction, RechargePost, RechargeRequest,
                               Transaction, required_fee, sign_transaction, signing_payload)

ORDER_GAS = 50_000
"""Gas limit of an orders-contract call (create_order uses about 13,000, under half of this: checked by
tests/unit/test_order_contract.py)."""
PARAMS_CACHE_S = 30.0
"""Chain parameters (minimum fees can change by governance) are read again after this long, or at once after a
`fee_too_low` refusal."""
CATALOG_CACHE_S = 5.0
CATALOG_CACHE_ENTRIES_MAX = 10_000


@dataclass(frozen=True, slots=True)
class ChainParams:
    domain: crypto.SigningDomain
    """The region's network (chain id and genesis hash): what transactions for it are signed for."""
    orders_contract: bytes
    min_fees: dict[str, int]
    decimals: dict[str, int]


class ChainView:
    """One region's chain: cached parameters and catalog entries, transaction building."""

    def __init__(self, client: RegionClient) -> None:
        self.client = client
        self._params: ChainParams | None = None
        self._params_read_at = 0.0
        self._catalog: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()

    def forget_params(self) -> None:
        self._params = None

    async def params(self) -> ChainParams:
        if self._params is None or time.monotonic() - self._params_read_at > PARAMS_CACHE_S:
            answer = await self.client.call("chain_getParams")
            contracts = {c["name"]: crypto.parse_address(c["address"]) for c in answer.get("contracts", [])}
            if system.ORDERS not in contracts:
                raise ChainError(0, f"chain {answer['chain_id']} has no orders contract")
            try:
                domain = signing_domain_from_json(answer)
            except ValueError as error:
                raise ChainError(0, f"the node's chain_getParams names {error}") from error
            self._params = ChainParams(domain, contracts[system.ORDERS],
                                       {a["code"]: a["min_fee"] for a in answer["assets"]},
                                       {a["code"]: a["decimals"] for a in answer["assets"]})
            self._params_read_at = time.monotonic()
        return self._params

    async def catalog_entry(self, merchant: str, product_id: str, fresh: bool = False) -> dict[str, Any] | None:
        """The merchant's catalog entry for `product_id` (cached for a few seconds unless `fresh`), or None."""
        key = (merchant, product_id)
        cached = self._catalog.get(key)
        if cached is not None and not fresh and time.monotonic() - cached[0] < CATALOG_CACHE_S:
            return cached[1]
        params = await self.params()
        answer = await self.client.call("contract_query", crypto.format_address(params.orders_contract),
                                        "catalog_get", [{"address": merchant}, product_id])
        entry = answer["value"]
        if entry is None:
            return None  # not cached: a product the merchant adds now can be sold at once
        self._catalog[key] = (time.monotonic(), entry)
        self._catalog.move_to_end(key)
        while len(self._catalog) > CATALOG_CACHE_ENTRIES_MAX:
            self._catalog.popitem(last=False)
        return entry

    async def pending_nonce(self, address: bytes) -> int:
        return (await self.client.call("account_get", crypto.format_address(address)))["pending_nonce"]

    async def account(self, address: bytes) -> dict[str, Any]:
        return await self.client.call("account_get", crypto.format_address(address))

    async def order_call(self, public_key: bytes, nonce: int, function: str, args: tuple, fee_asset: str,
                         value: tuple[str, int]) -> Transaction:
        """An orders-contract call from `public_key`, attaching `value` (asset, minor units; ("", 0) for none)."""
        params = await self.params()
        body = CallContract(params.orders_contract, function, encoding.encode_value(args), ORDER_GAS, *value)
        return self.with_least_fee(Transaction(params.domain.chain_id, public_key, nonce, fee_asset, 0, body), params)

    async def recharge_request(self, public_key: bytes, nonce: int, gateway: bytes, asset: str, amount: int,
                               reference: str) -> Transaction:
        params = await self.params()
        body = RechargeRequest(gateway, asset, amount, reference)
        return self.with_least_fee(Transaction(params.domain.chain_id, public_key, nonce, asset, 0, body), params)

    @staticmethod
    def with_least_fee(transaction: Transaction, params: ChainParams) -> Transaction:
        if transaction.fee_asset not in params.min_fees:
            raise InvalidTransaction("unknown_asset", f"the chain has no asset {transaction.fee_asset}")
        return dataclasses.replace(transaction, fee=required_fee(transaction, params.min_fees[transaction.fee_asset]))


def prepared_payload(transaction: Transaction) -> bytes:
    """The bytes the shopper's browser signs."""
    return encoding.encode(transaction)


def is_prepared(envelope: Envelope, prepared: bytes) -> bool:
    """True if the opened (signature-checked) transaction is exactly the one whose bytes were prepared."""
    return signing_payload(envelope) == prepared


class Signer:
    """Signs and sends transactions for one key, one at a time.

    The next nonce is the node's pending nonce, unless the node has not seen our last transaction yet
    (forwarding takes a moment): then it follows that transaction, as long as a node still knows it.
    A transaction that got lost therefore leaves no gap that would strand every later one."""

    def __init__(self, keys: crypto.KeyPair) -> None:
        self.keys = keys
        self._lock = asyncio.Lock()
        self._last: tuple[int, str] | None = None
        """(nonce, hash) of the last transaction sent."""

    async def send(self, chain: ChainView, body: Body, fee_asset: str) -> str:
        async with self._lock:
            try:
                return await self._send_once(chain, body, fee_asset)
            except ChainError as error:
                if error.rule != "fee_too_low":
                    raise
                chain.forget_params()  # governance raised the minimum fee: read it again, once
                return await self._send_once(chain, body, fee_asset)

    async def _send_once(self, chain: ChainView, body: Body, fee_asset: str) -> str:
        params = await chain.params()
        nonce = await self._next_nonce(chain)
        transaction = chain.with_least_fee(Transaction(params.domain.chain_id, self.keys.public_key, nonce, fee_asset,
                                                       0, body), params)
        tx_hash = await chain.client.send_transaction(sign_transaction(self.keys, params.domain, transaction),
                                                      resend=False)
        self._last = (nonce, tx_hash)
        return tx_hash

    async def _next_nonce(self, chain: ChainView) -> int:
        pending = await chain.pending_nonce(self.keys.address)
        if self._last is None or pending > self._last[0]:
            return pending
        status = (await chain.client.call("tx_get", self._last[1]))["status"]
        return self._last[0] + 1 if status in ("pending", "committed") else pending

    async def call_orders(self, chain: ChainView, function: str, args: tuple, fee_asset: str) -> str:
        params = await chain.params()
        body = CallContract(params.orders_contract, function, encoding.encode_value(args), ORDER_GAS, "", 0)
        return await self.send(chain, body, fee_asset)

    async def post_recharge(self, chain: ChainView, request_id: bytes, reference: str, fee_asset: str) -> str:
        return await self.send(chain, RechargePost(request_id, reference), fee_asset)

