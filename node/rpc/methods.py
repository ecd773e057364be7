"""The node's JSON-RPC methods (DESIGN §8 names), thin: parse params, call the ledger, shape JSON."""

from __future__ import annotations

import time
from typing import Any, Callable

from node import crypto, encoding, limits
from node.app import Ledger
from node.blocks import header_hash
from node.encoding import DecodeError
from node.rpc import errors, views
from node.rpc.jsonrpc import INVALID_PARAMS, Dispatcher, RpcError
from node.state import recharge_key
from node.verifier import BatchVerifier
from node.transactions import InvalidTransaction, SignedTransaction, transaction_hash

NODE_VERSION = "0.1.0"


def parse_address_param(value: Any, name: str = "address") -> bytes:
    try:
        return crypto.parse_address(value)
    except crypto.InvalidAddress as error:
        raise RpcError(INVALID_PARAMS, f"Invalid params: {name}: {error}") from error


def parse_hash_param(value: Any, name: str) -> bytes:
    try:
        data = encoding.parse_hex(value, name, 32)
    except DecodeError as error:
        raise RpcError(INVALID_PARAMS, f"Invalid params: {error}") from error
    if len(data) != 32:
        raise RpcError(INVALID_PARAMS, f"Invalid params: {name} must be 32 bytes of hex")
    return data


def parse_tx_param(value: Any, name: str = "tx") -> bytes:
    try:
        return encoding.parse_hex(value, name, limits.tx_bytes_max)
    except DecodeError as error:
        raise RpcError(INVALID_PARAMS, f"Invalid params: {error}") from error


class NodeMethods:
    """Methods over one ledger. `on_admitted(raws)` tells block production there is work (and PBFT
    forwards the transactions to the other validators)."""

    def __init__(self, ledger: Ledger, validator_address: bytes | None, on_admitted: Callable[[list[bytes]], None],
                 consensus_info: Callable[[], dict[str, Any]] | None = None,
                 verifier: BatchVerifier | None = None) -> None:
        self.ledger = ledger
        self.verifier = verifier or BatchVerifier(ledger.chain_id, workers=1, processes=False)
        self.validator_address = validator_address
        self.on_admitted = on_admitted
        self.consensus_info = consensus_info or (lambda: {"view": 0, "primary": None, "peers": [], "syncing": False})
        self.started_s = time.time()

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register("node_status", self.node_status)
        dispatcher.register("node_peers", self.node_peers)
        dispatcher.register("chain_getParams", self.chain_get_params)
        dispatcher.register("chain_getBlock", self.chain_get_block, ("block",), required=0)
        dispatcher.register("chain_getValidators", self.chain_get_validators)
        dispatcher.register("tx_send", self.tx_send, ("tx",))
        dispatcher.register("tx_sendBatch", self.tx_send_batch, ("txs",))
        dispatcher.register("tx_get", self.tx_get, ("hash",))
        dispatcher.register("account_get", self.account_get, ("address",))
        dispatcher.register("account_getProof", self.account_get_proof, ("address",))
        dispatcher.register("account_getHistory", self.account_get_history, ("address", "limit", "before"), required=1)
        dispatcher.register("recharge_get", self.recharge_get, ("request_id",))

    # --- node and chain -------------------------------------------------------------------

    async def node_status(self, context: Any) -> dict[str, Any]:
        head = self.ledger.head
        return {
            "node_version": NODE_VERSION,
            "chain_id": self.ledger.chain_id,
            "genesis_hash": views.hex0x(self.ledger.store.genesis.hash),
            "height": head.height,
            "block_hash": views.hex0x(head.block_hash),
            "state_root": views.hex0x(head.state_root),
            "last_block_time_ms": head.timestamp_ms,
            "validator": None if self.validator_address is None else views.address_text(self.validator_address),
            "mempool": {"txs": len(self.ledger.mempool), "bytes": self.ledger.mempool.bytes},
            "uptime_s": int(time.time() - self.started_s),
            **self.consensus_info(),
        }

    async def node_peers(self, context: Any) -> list[dict[str, Any]]:
        return list(self.consensus_info().get("peers", []))

    async def chain_get_params(self, context: Any) -> dict[str, Any]:
        params = self.ledger.params
        return {
            "chain_id": params.chain_id,
            "genesis_time_ms": params.genesis_time_ms,
            "fee_account": views.address_text(params.fee_account),
            "assets": [{"code": a.code, "decimals": a.decimals, "min_fee": a.min_fee} for a in params.assets],
            "limits": {"tx_bytes_max": limits.tx_bytes_max, "block_txs_max": limits.block_txs_max,
                       "nonce_window_max": limits.nonce_window_max,
                       "rpc_send_batch_txs_max": limits.rpc_send_batch_txs_max},
        }

    async def chain_get_validators(self, context: Any) -> list[dict[str, Any]]:
        return [{"index": i, "name": v.name, "address": views.address_text(v.address),
                 "public_key": views.hex0x(v.public_key), "role": views.role_name(v.role),
                 "p2p_address": v.p2p_address} for i, v in enumerate(self.ledger.params.validators)]

    async def chain_get_block(self, context: Any, block: Any = "latest") -> dict[str, Any]:
        store = self.ledger.store
        if block == "latest":
            height = store.head.height
        elif type(block) is int and block >= 0:
            height = block
        elif isinstance(block, str):
            found = store.height_of_block(parse_hash_param(block, "block"))
            if found is None:
                raise errors.not_found("block")
            height = found
        else:
            raise RpcError(INVALID_PARAMS, "Invalid params: block is a height, a 0x block hash, or \"latest\"")
        if height == 0:
            raise errors.not_found("block 0 (genesis has no block; see chain_getParams)")
        stored = store.get_block(height)
        if stored is None:
            raise errors.not_found(f"block {height}")
        tx_hashes = [transaction_hash(raw) for raw in stored.transactions]
        return views.block_json(stored, header_hash(stored.header), store.get_certificate(height), tx_hashes)

    # --- transactions -------------------------------------------------------------------------

    async def tx_send(self, context: Any, tx: Any) -> dict[str, Any]:
        raw = parse_tx_param(tx)
        try:
            tx_hash = self.ledger.check_tx(raw)
        except InvalidTransaction as error:
            raise errors.transaction_rejected(error.code, error.message) from error
        self.on_admitted([raw])
        return {"hash": views.hex0x(tx_hash)}

    async def tx_send_batch(self, context: Any, txs: Any) -> dict[str, Any]:
        if not isinstance(txs, list):
            raise RpcError(INVALID_PARAMS, "Invalid params: txs must be an array of hex strings")
        if len(txs) > limits.rpc_send_batch_txs_max:
            raise RpcError(errors.TOO_MANY, f"a batch holds at most {limits.rpc_send_batch_txs_max} transactions, "
                                            f"got {len(txs)}")
        results: list[dict[str, Any] | None] = [None] * len(txs)
        raws: list[tuple[int, bytes]] = []
        for index, item in enumerate(txs):
            try:
                raws.append((index, parse_tx_param(item, f"txs[{index}]")))
            except RpcError as error:
                results[index] = {"error": error.to_json()}
        opened = await self.verifier.open_many([raw for _, raw in raws])
        admitted: list[bytes] = []
        for (index, raw), envelope in zip(raws, opened):
            try:
                if isinstance(envelope, InvalidTransaction):
                    self.ledger.record_rejection(transaction_hash(raw), envelope.code, envelope.message)
                    raise envelope
                results[index] = {"hash": views.hex0x(self.ledger.check_tx(raw, verified=envelope))}
                admitted.append(raw)
            except InvalidTransaction as error:
                results[index] = {"error": errors.transaction_rejected(error.code, error.message).to_json()}
        if admitted:
            self.on_admitted(admitted)
        return {"accepted": len(admitted), "rejected": len(txs) - len(admitted), "results": results}

    async def tx_get(self, context: Any, hash: Any) -> dict[str, Any]:
        tx_hash = parse_hash_param(hash, "hash")
        record = self.ledger.store.get_tx(tx_hash)
        if record is not None:
            signed = _decode_signed(record.raw)
            sender = crypto.address_from_public_key(signed.transaction.sender_public_key)
            block = self.ledger.store.get_block(record.height)
            return {
                "hash": views.hex0x(tx_hash), "status": "committed", "height": record.height, "index": record.index,
                "block_hash": views.hex0x(header_hash(block.header)),
                "transaction": views.transaction_json(signed.transaction, sender),
                "receipt": views.receipt_json(record.receipt),
            }
        if tx_hash in self.ledger.mempool:
            return {"hash": views.hex0x(tx_hash), "status": "pending"}
        rejection = self.ledger.recent_rejections.get(tx_hash)
        if rejection is not None:
            code, message = rejection
            return {"hash": views.hex0x(tx_hash), "status": "rejected", "rule": code, "message": message}
        return {"hash": views.hex0x(tx_hash), "status": "unknown"}

    # --- accounts -----------------------------------------------------------------------------

    async def account_get(self, context: Any, address: Any) -> dict[str, Any]:
        account_address = parse_address_param(address)
        account = self.ledger.state().account(account_address)
        pending = self.ledger.mempool.pending_nonce(account_address, account.nonce)
        result = views.account_json(account_address, account, pending)
        result["height"] = self.ledger.head.height
        return result

    async def account_get_proof(self, context: Any, address: Any) -> dict[str, Any]:
        account_address = parse_address_param(address)
        proof = self.ledger.committed.prove_account(account_address)
        head = self.ledger.head
        return {"address": views.address_text(account_address), "height": head.height,
                "state_root": views.hex0x(head.state_root), "exists": bool(proof.account),
                "proof": views.hex0x(encoding.encode(proof))}

    async def account_get_history(self, context: Any, address: Any, limit: Any = 20,
                                  before: Any = None) -> dict[str, Any]:
        account_address = parse_address_param(address)
        if type(limit) is not int or not 1 <= limit <= limits.rpc_history_items_max:
            raise RpcError(INVALID_PARAMS, f"Invalid params: limit must be 1..{limits.rpc_history_items_max}")
        cursor = None
        if before is not None:
            if not (isinstance(before, list) and len(before) == 2 and all(type(v) is int and v >= 0 for v in before)):
                raise RpcError(INVALID_PARAMS, "Invalid params: before is the [height, index] cursor of a page")
            cursor = (before[0], before[1])
        items = []
        for height, index, tx_hash in self.ledger.store.account_history(account_address, cursor, limit):
            record = self.ledger.store.get_tx(tx_hash)
            assert record is not None
            signed = _decode_signed(record.raw)
            sender = crypto.address_from_public_key(signed.transaction.sender_public_key)
            items.append({"hash": views.hex0x(tx_hash), "height": height, "index": index,
                          "transaction": views.transaction_json(signed.transaction, sender),
                          "receipt": views.receipt_json(record.receipt)})
        next_cursor = [items[-1]["height"], items[-1]["index"]] if len(items) == limit else None
        return {"address": views.address_text(account_address), "items": items, "next": next_cursor}

    async def recharge_get(self, context: Any, request_id: Any) -> dict[str, Any]:
        key = parse_hash_param(request_id, "request_id")
        record = self.ledger.state().get(recharge_key(key))
        if record is None:
            raise errors.not_found("recharge request")
        return views.recharge_json(key, record)


def _decode_signed(raw: bytes) -> SignedTransaction:
    return encoding.decode(SignedTransaction, raw, limits.tx_bytes_max)
