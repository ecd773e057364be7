"""Shared test helpers: deterministic keys, small genesis documents, a ledger that commits blocks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import aiohttp

from node import blocks, crypto
from node.app import CommittedBlock, Ledger
from node.contracts import system
from node.genesis import Genesis, genesis_document, parse_genesis
from node.localnet import dev_keys
from node.rpc.jsonrpc import Dispatcher
from node.rpc.methods import NodeMethods
from node.rpc.server import RpcServer
from node.rpc.views import signing_domain_from_json
from node.storage.chain import ChainStore
from node.storage.kv import KeyValueStore, MemoryStore
from node.transactions import Body, Transaction, Transfer, sign_transaction

CHAIN_ID = "paychain-test"
ASSETS = [{"code": "CNY", "decimals": 2, "min_fee": 1}, {"code": "USD", "decimals": 2, "min_fee": 2}]


def keys(name: str) -> crypto.KeyPair:
    return dev_keys(f"test/{name}")


def make_genesis(users: dict[str, dict[str, int]] | None = None, gateways: tuple[str, ...] = ("gateway",),
                 merchants: tuple[str, ...] = ("merchant",),
                 validators: int = 1, chain_id: str = CHAIN_ID, deployers: tuple[str, ...] = (),
                 orders: tuple[int, int, int] | None = None, crossborder: tuple | None = None) -> Genesis:
    """A genesis with named test accounts; users default to alice and bob with 1,000.00 CNY and USD each.

    `orders`: deploy the system orders contract with these init arguments (fee_bps, confirm_blocks, ship_blocks);
    `crossborder`: deploy the cross-border contract with these init arguments."""
    users = users if users is not None else {"alice": {"CNY": 100_000, "USD": 100_000},
                                             "bob": {"CNY": 100_000, "USD": 100_000}}
    accounts = [{"address": crypto.format_address(keys(n).address), "role": "user", "balances": b}
                for n, b in users.items()]
    accounts += [{"address": crypto.format_address(keys(n).address), "role": "gateway",
                  "balances": {"CNY": 10_000, "USD": 10_000}} for n in gateways]
    accounts += [{"address": crypto.format_address(keys(n).address), "role": "merchant",
                  "balances": {"CNY": 1_000}} for n in merchants]
    validator_entries = [{"name": f"v{i}", "public_key": keys(f"validator-{i}").public_key.hex(),
                          "role": ("merchant", "gateway", "user")[min(i, 2)], "p2p_address": ""}
                         for i in range(validators)]
    contracts = [] if orders is None else [{"name": "orders", "source": system.source("orders"),
                                            "init_args": list(orders)}]
    if crossborder is not None:
        contracts.append({"name": "crossborder", "source": system.source("crossborder"), "init_args": list(crossborder)})
    document = genesis_document(chain_id, 1_700_000_000_000, ASSETS, keys("fees").address, validator_entries,
                                accounts, [keys(name).address for name in deployers], contracts)
    return parse_genesis(document)


DOMAIN = make_genesis().signing_domain
"""The signing domain of the default test genesis (`make_genesis()`); another genesis has another one."""


def other_network(domain: crypto.SigningDomain = DOMAIN) -> crypto.SigningDomain:
    """A network with the same chain id as `domain` but another genesis (e.g. a second local network)."""
    return crypto.SigningDomain(domain.chain_id, crypto.hash_bytes(b"another genesis" + domain.genesis_hash))


def sign(name: str, nonce: int, body: Body, fee: int = 1, fee_asset: str = "CNY",
         domain: crypto.SigningDomain = DOMAIN) -> bytes:
    """A transaction from a named test account, signed for the network `domain`."""
    pair = keys(name)
    return sign_transaction(pair, domain, Transaction(domain.chain_id, pair.public_key, nonce, fee_asset, fee, body))


def signer_for(genesis: Genesis) -> Callable[..., bytes]:
    """`sign`, for transactions on `genesis`'s network (a genesis other than `make_genesis()`'s)."""
    return functools.partial(sign, domain=genesis.signing_domain)


def network_of(client: Any) -> crypto.SigningDomain:
    """The signing domain of the network a running node serves, read from its `node_status` as wallets do
    (`client`: a wallet_cli RpcClient)."""
    return signing_domain_from_json(client.call("node_status"))


def dev_transfer(domain: crypto.SigningDomain, sender: str, nonce: int, recipient: str, amount: int) -> bytes:
    """A CNY transfer (fee 1) between dev accounts of a local network (`node.localnet.dev_keys`), signed for
    `domain`."""
    pair = dev_keys(sender)
    body = Transfer(dev_keys(recipient).address, "CNY", amount)
    return sign_transaction(pair, domain, Transaction(domain.chain_id, pair.public_key, nonce, "CNY", 1, body))


def address(name: str) -> str:
    """The text address of a named test account."""
    return crypto.format_address(keys(name).address)


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def transfer(sender: str = "alice", nonce: int = 0, recipient: str = "bob", amount: int = 100, asset: str = "CNY",
             fee: int = 1, fee_asset: str = "CNY", domain: crypto.SigningDomain = DOMAIN) -> bytes:
    """A signed transfer between named test accounts."""
    return sign(sender, nonce, Transfer(keys(recipient).address, asset, amount), fee, fee_asset, domain)


@dataclass
class TestChain:
    """A ledger on a store, with a single validator that can certify blocks."""

    ledger: Ledger
    validator: crypto.KeyPair = field(default_factory=lambda: keys("validator-0"))
    now_ms: int = 1_700_000_001_000

    def commit_pending(self) -> CommittedBlock:
        """Propose a block from the mempool and commit it with a quorum of the validators' signatures."""
        height = self.ledger.head.height + 1
        self.now_ms += 1000
        block = self.ledger.prepare_proposal(height, 0, self.validator.address, self.now_ms)
        self.ledger.process_proposal(block)
        signers = [keys(f"validator-{i}") for i in range(blocks.quorum_size(len(self.ledger.validator_keys)))]
        return self.ledger.commit(block, certify(block, signers, self.ledger.signing_domain))

    def submit(self, *raws: bytes) -> list[bytes]:
        return [self.ledger.check_tx(raw) for raw in raws]


def certify(block: blocks.Block, validators: crypto.KeyPair | list[crypto.KeyPair],
            domain: crypto.SigningDomain) -> blocks.CommitCertificate:
    """A commit certificate signed by `validators` (validator i = the i-th key given) for the network `domain`."""
    signers = validators if isinstance(validators, list) else [validators]
    vote = blocks.CommitVote(block.header.height, block.header.view, blocks.header_hash(block.header))
    signatures = tuple(blocks.CommitSignature(index, blocks.sign_commit(signer, domain, vote))
                       for index, signer in enumerate(signers))
    return blocks.CommitCertificate(vote.height, vote.view, vote.block_hash, signatures)


def make_chain(genesis: Genesis | None = None, kv: KeyValueStore | None = None) -> TestChain:
    genesis = genesis or make_genesis()
    return TestChain(Ledger(ChainStore(kv or MemoryStore(), genesis), clock_ms=lambda: 1_700_000_100_000))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- JSON-RPC servers for integration tests -----------------------------------------------

RPC_WAIT_S = 10.0
"""Longest any single client wait (HTTP response, WebSocket message, server start) may take in a test."""
TEST_RUN_S = 120.0
"""Longest one asynchronous test may run in total."""


def run_async(function):
    """Run an `async def` test body with `asyncio.run`, bounded by TEST_RUN_S (pytest fixtures still work)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(function(*args, **kwargs), TEST_RUN_S))

    return wrapper


@dataclass
class RpcHarness:
    """A running RpcServer on 127.0.0.1 and an HTTP session to talk to it."""

    server: RpcServer
    session: aiohttp.ClientSession
    admitted: list[int] = field(default_factory=list)
    """One entry per `on_admitted` call NodeMethods made (when the harness registered NodeMethods)."""

    def url(self, path: str = "/rpc") -> str:
        return f"http://{self.server.host}:{self.server.port}{path}"

    async def post(self, body: str | bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST a raw body to /rpc: (HTTP status, parsed JSON or None when the body is empty)."""
        async with self.session.post(self.url(), data=body,
                                     headers=headers or {"Content-Type": "application/json"}) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)

    async def call(self, method: str, params: Any = None, call_id: Any = 1) -> dict[str, Any]:
        """One JSON-RPC call over HTTP; returns the whole response object."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": call_id}
        if params is not None:
            request["params"] = params
        status, response = await self.post(json.dumps(request))
        assert status == 200, (status, response)
        assert isinstance(response, dict) and response.get("id") == call_id, response
        return response

    async def result(self, method: str, params: Any = None) -> Any:
        response = await self.call(method, params)
        assert "error" not in response, response
        return response["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        response = await self.call(method, params)
        assert "result" not in response, response
        return response["error"]

    async def websocket(self, **options: Any) -> aiohttp.ClientWebSocketResponse:
        timeout = aiohttp.ClientWSTimeout(ws_receive=RPC_WAIT_S, ws_close=RPC_WAIT_S)
        return await self.session.ws_connect(self.url("/ws"), timeout=timeout, **options)


def node_dispatcher(ledger: Ledger, admitted: list[int]) -> Dispatcher:
    """A Dispatcher serving the node's methods; `admitted` grows by one on each `on_admitted` call."""
    dispatcher = Dispatcher()
    NodeMethods(ledger, keys("validator-0").address, lambda raws: admitted.append(len(raws))).register(dispatcher)
    return dispatcher


@contextlib.asynccontextmanager
async def serve_rpc(ledger: Ledger, dispatcher: Dispatcher | None = None,
                    admin_token: str | None = None, gateway_tokens: tuple[str, ...] = (),
                    hostnames: tuple[str, ...] = ()) -> AsyncIterator[RpcHarness]:
    """A real RpcServer on 127.0.0.1 (port chosen by the OS) and a client session, stopped on exit.

    Without `dispatcher`, the node's own methods (NodeMethods) are served.
    """
    admitted: list[int] = []
    server = RpcServer(dispatcher or node_dispatcher(ledger, admitted), ledger, "127.0.0.1", 0,
                       admin_token=admin_token, gateway_tokens=gateway_tokens, hostnames=hostnames)
    ready = asyncio.Event()
    task = asyncio.create_task(server.run(ready))
    waiter = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=RPC_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # re-raise why the server could not start
        assert ready.is_set() and server.port != 0, "the RPC server did not start in time"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=RPC_WAIT_S)) as session:
            yield RpcHarness(server, session, admitted)
    finally:
        waiter.cancel()
        task.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
