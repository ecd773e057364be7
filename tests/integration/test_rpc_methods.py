"""The node's JSON-RPC methods (DESIGN §8) over real HTTP against a real RpcServer and Ledger.

Blocks are committed with TestChain between calls, so every answer can be checked against
what the chain really holds.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node import blocks, crypto, encoding, limits
from node.rpc.errors import NOT_FOUND, TOO_MANY, TRANSACTION_RULE_CODES
from node.state import PROOF_BYTES_MAX, AccountProof, ValidatorInfo, verify_account_proof
from node.transactions import (AddValidator, GovernancePropose, RechargePost, RechargeRequest, Register, Role,
                               Withdraw, transaction_hash)
from tests import support
from tests.support import (ASSETS, CHAIN_ID, DOMAIN, address, hex0x, keys, make_chain, make_genesis, other_network,
                           run_async, serve_rpc, sign, signer_for, transfer)

INVALID_PARAMS = -32602
STARTING_BALANCE = 100_000
"""What make_genesis gives alice and bob in each asset."""


def flip_last_byte(raw: bytes) -> bytes:
    """The same transaction with a corrupted signature (the signature is the encoding's last 64 bytes)."""
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


# --- node and chain ------------------------------------------------------------------------

@run_async
async def test_node_status_reports_the_head_and_the_mempool() -> None:
    chain = make_chain()
    chain.submit(transfer(nonce=0))
    chain.commit_pending()
    pending = transfer(nonce=1)
    async with serve_rpc(chain.ledger) as rpc:
        await rpc.result("tx_send", [hex0x(pending)])
        status = await rpc.result("node_status")
        latest = await rpc.result("chain_getBlock", ["latest"])
        assert await rpc.result("node_peers") == []
    assert status["chain_id"] == CHAIN_ID
    assert status["genesis_hash"] == hex0x(make_genesis().hash) == hex0x(DOMAIN.genesis_hash)
    assert status["height"] == 1
    assert status["block_hash"] == latest["header"]["hash"]
    assert status["state_root"] == latest["header"]["state_root"]
    assert status["last_block_time_ms"] == latest["header"]["timestamp_ms"]
    assert status["validator"] == address("validator-0")
    assert status["mempool"] == {"txs": 1, "bytes": len(pending)}


@run_async
async def test_chain_get_params() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        params = await rpc.result("chain_getParams")
    assert params["chain_id"] == CHAIN_ID
    assert params["genesis_hash"] == hex0x(make_genesis().hash)  # what wallets sign for, with the chain id
    assert params["genesis_time_ms"] == 1_700_000_000_000
    assert params["fee_account"] == address("fees")
    assert params["assets"] == ASSETS
    assert params["limits"] == {"tx_bytes_max": limits.tx_bytes_max, "block_txs_max": limits.block_txs_max,
                                "payment_tx_bytes_max": limits.payment_tx_bytes_max,
                                "nonce_window_max": limits.nonce_window_max,
                                "rpc_send_batch_txs_max": limits.rpc_send_batch_txs_max,
                                "contract_gas_max": limits.contract_gas_max,
                                "gas_per_fee_unit": limits.gas_per_fee_unit}
    assert params["contracts"] == []  # this genesis deploys none


@run_async
async def test_chain_get_validators() -> None:
    async with serve_rpc(make_chain(make_genesis(validators=2)).ledger) as rpc:
        validators = await rpc.result("chain_getValidators")
    assert validators == [
        {"index": 0, "name": "v0", "address": address("validator-0"),
         "public_key": hex0x(keys("validator-0").public_key), "role": "merchant", "p2p_address": ""},
        {"index": 1, "name": "v1", "address": address("validator-1"),
         "public_key": hex0x(keys("validator-1").public_key), "role": "gateway", "p2p_address": ""},
    ]


@run_async
async def test_chain_get_validators_of_a_past_height() -> None:
    """After governance grew the set, the set of an old height still checks that block's certificate."""
    genesis = make_genesis(users={"validator-0": {"CNY": 1_000}}, validators=1)
    chain = make_chain(genesis)
    newcomer = ValidatorInfo("v1", keys("validator-1").public_key, int(Role.USER), "validator-1.example.com:26656")
    chain.submit(signer_for(genesis)("validator-0", 0, GovernancePropose(AddValidator(newcomer), 10)))  # enacted
    assert chain.commit_pending().receipts[0].events[-1].name == "proposal_executed"
    for nonce in (1, 2):
        chain.submit(transfer("validator-0", nonce, domain=genesis.signing_domain))
        chain.commit_pending()
    async with serve_rpc(chain.ledger) as rpc:
        by_height = [await rpc.result("chain_getValidators", [height]) for height in range(5)]
        default = await rpc.result("chain_getValidators")
        first, third = await rpc.result("chain_getBlock", [1]), await rpc.result("chain_getBlock", [3])
    assert [len(validators) for validators in by_height] == [1, 1, 1, 2, 2] and default == by_height[4]
    assert by_height[3][1]["p2p_address"] == "validator-1.example.com:26656"
    for block, validators in ((first, by_height[1]), (third, by_height[3])):
        certificate = encoding.decode(blocks.CommitCertificate, bytes.fromhex(block["certificate"]["encoded"][2:]),
                                      64 * 1024)
        header = chain.ledger.store.get_block(block["header"]["height"]).header
        blocks.verify_certificate(certificate, header, genesis.signing_domain,
                                  [bytes.fromhex(v["public_key"][2:]) for v in validators])


@pytest.mark.parametrize("height, code", [(4, NOT_FOUND), (-1, INVALID_PARAMS), ("1", INVALID_PARAMS),
                                          (True, INVALID_PARAMS)])
@run_async
async def test_invalid_chain_get_validators_height(height: Any, code: int) -> None:
    chain = make_chain()
    _two_blocks(chain)  # the next block is 3; 4 is not known yet
    async with serve_rpc(chain.ledger) as rpc:
        error = await rpc.error("chain_getValidators", [height])
    assert error["code"] == code


def _two_blocks(chain: support.TestChain) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Block 1 holds one transfer, block 2 two; returns (block hashes, block-1 tx hashes, block-2 tx hashes)."""
    first = chain.submit(transfer(nonce=0))
    block_1 = chain.commit_pending()
    second = chain.submit(transfer(nonce=1), transfer("bob", 0, "alice"))
    block_2 = chain.commit_pending()
    return [block_1.block_hash, block_2.block_hash], first, second


@run_async
async def test_chain_get_block_by_height_hash_and_latest() -> None:
    chain = make_chain()
    block_hashes, first_txs, second_txs = _two_blocks(chain)
    async with serve_rpc(chain.ledger) as rpc:
        by_height = [await rpc.result("chain_getBlock", [height]) for height in (1, 2)]
        by_hash = [await rpc.result("chain_getBlock", [hex0x(h)]) for h in block_hashes]
        by_named_param = await rpc.result("chain_getBlock", {"block": 1})
        latest = await rpc.result("chain_getBlock", ["latest"])
        default = await rpc.result("chain_getBlock")
    assert by_hash == by_height and by_named_param == by_height[0]
    assert latest == by_height[1] and default == latest
    first, second = by_height
    assert [first["header"]["height"], second["header"]["height"]] == [1, 2]
    assert [first["header"]["hash"], second["header"]["hash"]] == [hex0x(h) for h in block_hashes]
    assert second["header"]["parent_hash"] == first["header"]["hash"]
    assert first["transactions"] == [hex0x(h) for h in first_txs]
    assert second["transactions"] == [hex0x(h) for h in second_txs]
    assert second["header"]["tx_count"] == 2
    assert second["header"]["proposer"] == address("validator-0")
    stored = chain.ledger.store.get_block(2)
    assert second["header"]["tx_root"] == hex0x(blocks.tx_root(second_txs))
    assert second["header"]["state_root"] == hex0x(stored.header.state_root)
    certificate = second["certificate"]
    assert certificate["height"] == 2 and certificate["block_hash"] == second["header"]["hash"]
    assert [s["validator_index"] for s in certificate["signatures"]] == [0]
    decoded = encoding.decode(blocks.CommitCertificate, bytes.fromhex(certificate["encoded"][2:]), 64 * 1024)
    blocks.verify_certificate(decoded, stored.header, DOMAIN, (keys("validator-0").public_key,))


@pytest.mark.parametrize("block", [3, 1_000_000, "0x" + "11" * 32, 0])
@run_async
async def test_chain_get_block_not_found(block: Any) -> None:
    chain = make_chain()
    _two_blocks(chain)
    async with serve_rpc(chain.ledger) as rpc:
        error = await rpc.error("chain_getBlock", [block])
    assert error["code"] == NOT_FOUND and "not found" in error["message"]


@run_async
async def test_chain_get_latest_block_of_an_empty_chain_is_not_found() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        assert (await rpc.error("chain_getBlock", ["latest"]))["code"] == NOT_FOUND


@pytest.mark.parametrize("block", [-1, True, 1.5, None, [1], "0x1234", "newest", "0x" + "zz" * 32, 2**63, 2**64,
                                   10**300])
@run_async
async def test_invalid_chain_get_block_argument(block: Any) -> None:
    chain = make_chain()
    _two_blocks(chain)
    async with serve_rpc(chain.ledger) as rpc:
        error = await rpc.error("chain_getBlock", [block])
    assert error["code"] == INVALID_PARAMS


# --- tx_send ---------------------------------------------------------------------------------

@run_async
async def test_tx_send_returns_the_hash_and_admits_the_transaction() -> None:
    chain = make_chain()
    raw = transfer(nonce=0)
    async with serve_rpc(chain.ledger) as rpc:
        result = await rpc.result("tx_send", [hex0x(raw)])
        without_prefix = await rpc.result("tx_send", {"tx": transfer(nonce=1).hex()})
        status = await rpc.result("tx_get", [result["hash"]])
        admitted = len(rpc.admitted)
    assert result == {"hash": hex0x(transaction_hash(raw))}
    assert without_prefix == {"hash": hex0x(transaction_hash(transfer(nonce=1)))}
    assert status == {"hash": result["hash"], "status": "pending"}
    assert len(chain.ledger.mempool) == 2
    assert admitted == 2, "block production is told about every admitted transaction"


def _committed_then(raw: bytes) -> Callable[[support.TestChain], bytes]:
    def prepare(chain: support.TestChain) -> bytes:
        chain.submit(transfer(nonce=0))
        chain.commit_pending()
        return raw
    return prepare


def _pending_then(raw: bytes) -> Callable[[support.TestChain], bytes]:
    def prepare(chain: support.TestChain) -> bytes:
        chain.submit(transfer(nonce=0))
        return raw
    return prepare


def _already_committed(chain: support.TestChain) -> bytes:
    raw = transfer(nonce=0)
    chain.submit(raw)
    chain.commit_pending()
    return raw


def _mempool_full(chain: support.TestChain) -> bytes:
    chain.ledger.mempool.txs_max = 1
    chain.submit(transfer(nonce=0))
    return transfer("bob", 0, "alice")


def _just(raw: bytes) -> Callable[[support.TestChain], bytes]:
    return lambda chain: raw


REJECTIONS: dict[str, Callable[[support.TestChain], bytes]] = {
    "malformed": _just(bytes.fromhex("92c0c0")),
    "wrong_chain": _just(transfer(domain=crypto.SigningDomain("another-chain", DOMAIN.genesis_hash))),
    "bad_signature": _just(flip_last_byte(transfer())),
    "nonce_used": _committed_then(transfer(nonce=0, amount=7)),
    "nonce_too_far": _just(transfer(nonce=limits.nonce_window_max)),
    "nonce_taken": _pending_then(transfer(nonce=0, amount=7)),
    "insufficient_funds": _just(transfer(amount=STARTING_BALANCE)),
    "fee_too_low": _just(transfer(fee=1, fee_asset="USD")),
    "unknown_asset": _just(transfer(asset="EUR")),
    "mempool_full": _mempool_full,
    "already_known": _pending_then(transfer(nonce=0)),
    "already_committed": _already_committed,
    "not_registered": _just(transfer(sender="carol")),
    "zero_amount": _just(transfer(amount=0)),
    "self_transfer": _just(transfer(recipient="alice")),
    "unknown_role": _just(sign("gateway", 0, Register(keys("carol").address, 0, b"\x01" * 32))),
    "missing_reference": _just(sign("alice", 0, Withdraw(keys("gateway").address, "CNY", 10, ""))),
}


@pytest.mark.parametrize("rule", list(REJECTIONS))
@run_async
async def test_invalid_tx_send_gives_the_rule_code(rule: str) -> None:
    chain = make_chain()
    raw = REJECTIONS[rule](chain)
    mempool_before = len(chain.ledger.mempool)
    async with serve_rpc(chain.ledger) as rpc:
        error = await rpc.error("tx_send", [hex0x(raw)])
        status = await rpc.result("tx_get", [hex0x(transaction_hash(raw))])
        admitted = len(rpc.admitted)
    assert error["code"] == TRANSACTION_RULE_CODES[rule]
    assert error["data"] == {"rule": rule}
    assert f"({rule})" in error["message"]
    assert len(chain.ledger.mempool) == mempool_before and admitted == 0
    expected_status = {"already_known": "pending", "already_committed": "committed"}.get(rule, "rejected")
    assert status["status"] == expected_status
    if expected_status == "rejected":
        assert status["rule"] == rule and status["message"] in error["message"]


@pytest.mark.parametrize("tx", ["0xzz", "0x123", 12, None, ["00"], "00" * (limits.tx_bytes_max + 1)],
                         ids=["not hex", "odd length", "number", "null", "array", "too long"])
@run_async
async def test_invalid_tx_send_hex_is_invalid_params(tx: Any) -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        error = await rpc.error("tx_send", [tx])
        assert error["code"] == INVALID_PARAMS and "tx" in error["message"]
        assert (await rpc.error("tx_send", []))["code"] == INVALID_PARAMS
    assert len(chain.ledger.mempool) == 0


@run_async
async def test_invalid_transaction_signed_for_another_genesis_with_the_same_chain_id() -> None:
    # Signed for another network named like this one (every local network is "paychain-local"): refused alone
    # and in a batch (verified by the batch verifier), nothing admitted.
    chain = make_chain()
    replayed = [transfer(nonce=0, domain=other_network()), transfer("bob", 0, "alice", domain=other_network())]
    async with serve_rpc(chain.ledger) as rpc:
        error = await rpc.error("tx_send", [hex0x(replayed[0])])
        batch = await rpc.result("tx_sendBatch", [[hex0x(raw) for raw in replayed]])
    assert error["data"] == {"rule": "bad_signature"} and "genesis hash" in error["message"]
    assert batch["rejected"] == 2 and [r["error"]["data"] for r in batch["results"]] == [{"rule": "bad_signature"}] * 2
    assert len(chain.ledger.mempool) == 0


# --- tx_sendBatch ----------------------------------------------------------------------------

@run_async
async def test_tx_send_batch_gives_a_result_per_item() -> None:
    chain = make_chain()
    good = [transfer(nonce=0), transfer(nonce=1)]
    items = [hex0x(good[0]), "0xzz", hex0x(flip_last_byte(transfer("bob", 0, "alice"))), hex0x(good[1]), "0x92c0c0"]
    async with serve_rpc(chain.ledger) as rpc:
        result = await rpc.result("tx_sendBatch", [items])
        statuses = [await rpc.result("tx_get", [hex0x(transaction_hash(raw))]) for raw in good]
        admitted = len(rpc.admitted)
    assert (result["accepted"], result["rejected"]) == (2, 3)
    results = result["results"]
    assert len(results) == len(items)
    assert results[0] == {"hash": hex0x(transaction_hash(good[0]))}
    assert results[3] == {"hash": hex0x(transaction_hash(good[1]))}
    assert results[1]["error"]["code"] == INVALID_PARAMS and "txs[1]" in results[1]["error"]["message"]
    assert results[2]["error"]["code"] == TRANSACTION_RULE_CODES["bad_signature"]
    assert results[2]["error"]["data"] == {"rule": "bad_signature"}
    assert results[4]["error"]["code"] == TRANSACTION_RULE_CODES["malformed"]
    assert [s["status"] for s in statuses] == ["pending", "pending"]
    assert len(chain.ledger.mempool) == 2 and admitted == 1


@run_async
async def test_tx_send_batch_at_the_limit_is_processed() -> None:
    chain = make_chain()
    items = ["0xzz"] * limits.rpc_send_batch_txs_max
    async with serve_rpc(chain.ledger) as rpc:
        result = await rpc.result("tx_sendBatch", [items])
    assert (result["accepted"], result["rejected"]) == (0, limits.rpc_send_batch_txs_max)


@run_async
async def test_tx_send_batch_over_the_limit_is_refused_whole() -> None:
    chain = make_chain()
    items = [hex0x(transfer(nonce=0))] + ["0xzz"] * limits.rpc_send_batch_txs_max
    async with serve_rpc(chain.ledger) as rpc:
        error = await rpc.error("tx_sendBatch", [items])
        admitted = len(rpc.admitted)
    assert error["code"] == TOO_MANY and str(limits.rpc_send_batch_txs_max) in error["message"]
    assert len(chain.ledger.mempool) == 0 and admitted == 0


@pytest.mark.parametrize("txs", ["0x00", {"a": "0x00"}, None])
@run_async
async def test_invalid_tx_send_batch_argument(txs: Any) -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        assert (await rpc.error("tx_sendBatch", [txs]))["code"] == INVALID_PARAMS


# --- tx_get ------------------------------------------------------------------------------------

@run_async
async def test_tx_get_follows_a_transaction_from_pending_to_committed() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        chain.submit(transfer("bob", 0, "merchant"))
        chain.commit_pending()
        tx_hash = (await rpc.result("tx_send", [hex0x(transfer(amount=250, fee=3))]))["hash"]
        assert await rpc.result("tx_get", [tx_hash]) == {"hash": tx_hash, "status": "pending"}
        chain.commit_pending()
        committed = await rpc.result("tx_get", {"hash": tx_hash})
        block = await rpc.result("chain_getBlock", [2])
    assert committed["status"] == "committed"
    assert (committed["height"], committed["index"]) == (2, 0)
    assert committed["block_hash"] == block["header"]["hash"] and block["transactions"] == [tx_hash]
    assert committed["transaction"] == {
        "kind": "transfer", "chain_id": CHAIN_ID, "sender": address("alice"), "nonce": 0, "fee_asset": "CNY",
        "fee": 3, "body": {"recipient": address("bob"), "asset": "CNY", "amount": 250}}
    assert committed["receipt"] == {
        "tx_hash": tx_hash, "success": True, "code": "", "message": "", "fee_asset": "CNY", "fee_paid": 3,
        "gas_used": 0, "events": [{"name": "transfer", "from": address("alice"), "to": address("bob"),
                                   "asset": "CNY", "amount": 250}]}


@run_async
async def test_tx_get_rejected_and_unknown() -> None:
    chain = make_chain()
    rejected = transfer(amount=STARTING_BALANCE + 1)
    async with serve_rpc(chain.ledger) as rpc:
        await rpc.error("tx_send", [hex0x(rejected)])
        rejected_status = await rpc.result("tx_get", [hex0x(transaction_hash(rejected))])
        unknown_status = await rpc.result("tx_get", ["0x" + "ab" * 32])
    assert rejected_status["status"] == "rejected" and rejected_status["rule"] == "insufficient_funds"
    assert "balance" in rejected_status["message"]
    assert unknown_status == {"hash": "0x" + "ab" * 32, "status": "unknown"}


@pytest.mark.parametrize("tx_hash", ["0x1234", "0x" + "ab" * 33, "nothex", 5, None])
@run_async
async def test_invalid_tx_get_hash(tx_hash: Any) -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        assert (await rpc.error("tx_get", [tx_hash]))["code"] == INVALID_PARAMS


# --- accounts ----------------------------------------------------------------------------------

@run_async
async def test_account_get_counts_the_mempool_in_pending_nonce() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        fresh = await rpc.result("account_get", [address("alice")])
        for nonce in (0, 1):
            await rpc.result("tx_send", [hex0x(transfer(nonce=nonce, amount=100))])
        await rpc.result("tx_send", [hex0x(transfer(nonce=3, amount=100))])  # after a gap: not next in line
        pending = await rpc.result("account_get", {"address": address("alice")})
        chain.commit_pending()
        committed = await rpc.result("account_get", [address("alice")])
        recipient = await rpc.result("account_get", [address("bob")])
    assert fresh == {"address": address("alice"), "nonce": 0, "pending_nonce": 0, "role": "user",
                     "registered": True, "kyc_hash": fresh["kyc_hash"], "registered_by": fresh["registered_by"],
                     "balances": {"CNY": STARTING_BALANCE, "USD": STARTING_BALANCE}, "suspended": False,
                     "deployer": False, "height": 0}
    assert (pending["nonce"], pending["pending_nonce"]) == (0, 2)
    assert pending["balances"] == fresh["balances"], "pending transactions do not change the committed balance"
    assert (committed["nonce"], committed["pending_nonce"], committed["height"]) == (2, 2, 1)
    assert committed["balances"]["CNY"] == STARTING_BALANCE - 2 * (100 + 1)
    assert recipient["balances"]["CNY"] == STARTING_BALANCE + 200


@run_async
async def test_account_get_of_an_unknown_account_is_empty() -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        account = await rpc.result("account_get", [address("carol")])
    assert account["nonce"] == 0 and account["pending_nonce"] == 0
    assert account["registered"] is False and account["role"] is None and account["balances"] == {}


@pytest.mark.parametrize("method", ["account_get", "account_getProof", "account_getHistory"])
@pytest.mark.parametrize("value", [address("alice")[:-1] + ("a" if address("alice")[-1] != "a" else "b"),
                                   "0x" + "00" * 20, 12, None], ids=["typo", "hex", "number", "null"])
@run_async
async def test_invalid_account_address(method: str, value: Any) -> None:
    async with serve_rpc(make_chain().ledger) as rpc:
        error = await rpc.error(method, [value])
    assert error["code"] == INVALID_PARAMS and "address" in error["message"]


def _decode_proof(text: str) -> AccountProof:
    assert text.startswith("0x")
    return encoding.decode(AccountProof, bytes.fromhex(text[2:]), PROOF_BYTES_MAX)


@run_async
async def test_account_get_proof_verifies_against_the_state_root() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        before = await rpc.result("account_getProof", [address("alice")])
        chain.submit(transfer(nonce=0, amount=500))
        chain.commit_pending()
        proof = await rpc.result("account_getProof", [address("alice")])
        absent = await rpc.result("account_getProof", [address("carol")])
        account = await rpc.result("account_get", [address("alice")])
        status = await rpc.result("node_status")
    assert proof["address"] == address("alice") and proof["exists"] is True
    assert (proof["height"], proof["state_root"]) == (1, status["state_root"])
    root = bytes.fromhex(proof["state_root"][2:])
    proven = verify_account_proof(root, _decode_proof(proof["proof"]))
    assert proven is not None
    assert proven.nonce == account["nonce"] == 1
    assert {b.asset: b.amount for b in proven.balances} == account["balances"]
    assert absent["exists"] is False
    assert verify_account_proof(root, _decode_proof(absent["proof"])) is None
    assert before["state_root"] != proof["state_root"]
    with pytest.raises(ValueError):
        verify_account_proof(root, _decode_proof(before["proof"]))  # a stale proof does not check


def _history_chain() -> tuple[support.TestChain, list[str]]:
    """alice sends 5 transfers over 3 blocks; bob sends one to merchant. Returns alice's tx hashes, newest first."""
    chain = make_chain()
    alice_hashes = []
    for block_nonces in ((0, 1), (2,), (3, 4)):
        for nonce in block_nonces:
            alice_hashes += chain.submit(transfer(nonce=nonce, amount=10 + nonce))
        if block_nonces == (2,):
            chain.submit(transfer("bob", 0, "merchant"))
        chain.commit_pending()
    return chain, [hex0x(h) for h in reversed(alice_hashes)]


async def _all_pages(rpc: Any, who: str, limit: int) -> list[dict[str, Any]]:
    pages, before = [], None
    for _ in range(20):
        params: dict[str, Any] = {"address": address(who), "limit": limit}
        if before is not None:
            params["before"] = before
        page = await rpc.result("account_getHistory", params)
        assert len(page["items"]) <= limit
        pages.append(page)
        before = page["next"]
        if before is None:
            return pages
    raise AssertionError("history paging did not end")


@pytest.mark.parametrize("limit", [1, 2, 5, 100])
@run_async
async def test_account_get_history_pages_with_the_next_cursor(limit: int) -> None:
    chain, alice_hashes = _history_chain()
    async with serve_rpc(chain.ledger) as rpc:
        pages = await _all_pages(rpc, "alice", limit)
    items = [item for page in pages for item in page["items"]]
    assert [item["hash"] for item in items] == alice_hashes
    assert all(len(page["items"]) == limit for page in pages[:-1])
    positions = [(item["height"], item["index"]) for item in items]
    assert positions == sorted(positions, reverse=True)
    assert all(item["transaction"]["sender"] == address("alice") and item["receipt"]["success"] for item in items)


@run_async
async def test_account_get_history_includes_received_transfers() -> None:
    chain, alice_hashes = _history_chain()
    async with serve_rpc(chain.ledger) as rpc:
        bob = await rpc.result("account_getHistory", [address("bob")])
        merchant = await rpc.result("account_getHistory", [address("merchant"), 1])
        nobody = await rpc.result("account_getHistory", [address("carol")])
    bob_hashes = [item["hash"] for item in bob["items"]]
    assert set(alice_hashes) < set(bob_hashes) and len(bob_hashes) == 6 and bob["next"] is None
    assert len(merchant["items"]) == 1 and merchant["items"][0]["transaction"]["sender"] == address("bob")
    assert nobody == {"address": address("carol"), "items": [], "next": None}


@pytest.mark.parametrize("extra", [
    {"limit": 0}, {"limit": limits.rpc_history_items_max + 1}, {"limit": "5"}, {"limit": True},
    {"before": [1]}, {"before": [-1, 0]}, {"before": "1,0"}, {"before": [1, "0"]},
])
@run_async
async def test_invalid_account_get_history_paging(extra: dict[str, Any]) -> None:
    chain, _ = _history_chain()
    async with serve_rpc(chain.ledger) as rpc:
        error = await rpc.error("account_getHistory", {"address": address("alice"), **extra})
    assert error["code"] == INVALID_PARAMS


# --- recharges ---------------------------------------------------------------------------------

@run_async
async def test_recharge_get_follows_a_request_to_posted() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        request = sign("alice", 0, RechargeRequest(keys("gateway").address, "CNY", 5_000, "bank-ref-1"))
        request_id = (await rpc.result("tx_send", [hex0x(request)]))["hash"]
        assert (await rpc.error("recharge_get", [request_id]))["code"] == NOT_FOUND
        chain.commit_pending()
        pending = await rpc.result("recharge_get", [request_id])
        post = sign("gateway", 0, RechargePost(bytes.fromhex(request_id[2:]), "post-ref-9"))
        await rpc.result("tx_send", [hex0x(post)])
        chain.commit_pending()
        posted = await rpc.result("recharge_get", {"request_id": request_id})
        alice = await rpc.result("account_get", [address("alice")])
        invalid = await rpc.error("recharge_get", ["0x12"])
    assert pending == {"request_id": request_id, "user": address("alice"), "gateway": address("gateway"),
                       "asset": "CNY", "amount": 5_000, "status": "pending", "reference": "bank-ref-1",
                       "resolution": "", "height": 1}
    assert posted == {**pending, "status": "posted", "resolution": "post-ref-9"}
    assert alice["balances"]["CNY"] == STARTING_BALANCE - 1 + 5_000
    assert invalid["code"] == INVALID_PARAMS


# --- health and metrics ------------------------------------------------------------------------

@run_async
async def test_healthz_reports_the_height() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        async with rpc.session.get(rpc.url("/healthz")) as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok", "height": 0}
        chain.commit_pending()
        async with rpc.session.get(rpc.url("/healthz")) as response:
            assert await response.json() == {"status": "ok", "height": 1}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@run_async
async def test_metrics_expose_height_and_rejections_by_rule() -> None:
    chain = make_chain()
    async with serve_rpc(chain.ledger) as rpc:
        chain.submit(transfer(nonce=0))
        chain.commit_pending()
        chain.commit_pending()
        await rpc.error("tx_send", [hex0x(flip_last_byte(transfer(nonce=1)))])
        await rpc.error("tx_send", [hex0x(flip_last_byte(transfer(nonce=2)))])
        await rpc.error("tx_send", [hex0x(transfer(nonce=1, fee=0))])
        async with rpc.session.get(rpc.url("/metrics")) as response:
            assert response.status == 200 and response.content_type == "text/plain"
            samples = _samples(await response.text())
    assert samples[("paychain_height", ())] == 2
    assert samples[("paychain_txs_rejected_total", (("rule", "bad_signature"),))] == 2
    assert samples[("paychain_txs_rejected_total", (("rule", "fee_too_low"),))] == 1
    assert samples[("paychain_blocks_committed_total", ())] == 2
    assert samples[("paychain_txs_committed_total", (("success", "true"),))] == 1
    assert samples[("paychain_rpc_calls_total", (("method", "tx_send"), ("outcome", "error")))] == 3


@pytest.mark.parametrize("method, params", [
    ("account_getHistory", {"address": address("alice"), "before": [2**64, 0]}),
    ("account_getHistory", {"address": address("alice"), "before": [1, 2**63]}),
    ("order_list", {"party": address("alice"), "before": [2**64, 0]}),
    ("order_list", {"party": address("alice"), "before": [0, 10**40]}),
    ("chain_getValidators", [2**64]),
])
@run_async
async def test_invalid_out_of_range_numbers_are_invalid_params_not_internal_errors(method: str, params: Any,
                                                                                   caplog) -> None:
    chain = make_chain()
    _two_blocks(chain)
    async with serve_rpc(chain.ledger) as rpc:
        error = await rpc.error(method, params)
    assert error["code"] in (INVALID_PARAMS, NOT_FOUND), error
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text
