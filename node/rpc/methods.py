"""The node's JSON-RPC methods (DESIGN §8 names), thin: parse params, call the ledger, shape JSON."""

from __future__ import annotations

import asyncio
import queue
import time
from typing import Any, Callable

from node import crypto, encoding, limits
from node.app import Ledger
from node.blocks import header_hash
from node.encoding import DecodeError
from node.rpc import errors, views
from node.rpc.budget import CallCost
from node.rpc.jsonrpc import INVALID_PARAMS, Dispatcher, RpcError
from node.contracts import runtime, sandbox, system
from node.contracts.gas import HostUnavailable
from node.contracts.host import NO_VALUE
from node.orders import ORDER_STATES, read_order
from node import governance, risk
from node.state import (PROPOSAL_INDEX_KEY, StaleStateView, contract_key, deployer_key, proposal_key,
                        recharge_key, suspension_key)
from node.transactions import SetRiskRules
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
        self.verifier = verifier or BatchVerifier(ledger.signing_domain, workers=1, processes=False)
        self.validator_address = validator_address
        self.on_admitted = on_admitted
        self.consensus_info = consensus_info or (lambda: {"view": 0, "primary": None, "peers": [], "syncing": False})
        self.started_s = time.time()
        self._loads_window_start = 0.0
        self._loads_in_window = 0

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register("node_status", self.node_status)
        dispatcher.register("node_peers", self.node_peers)
        dispatcher.register("chain_getParams", self.chain_get_params)
        dispatcher.register("chain_getBlock", self.chain_get_block, ("block",), required=0)
        dispatcher.register("chain_getValidators", self.chain_get_validators, ("height",), required=0)
        dispatcher.register("tx_send", self.tx_send, ("tx",), cost=_send_cost)
        dispatcher.register("tx_sendBatch", self.tx_send_batch, ("txs",), cost=_send_batch_cost)
        dispatcher.register("tx_get", self.tx_get, ("hash",))
        dispatcher.register("account_get", self.account_get, ("address",))
        dispatcher.register("account_getProof", self.account_get_proof, ("address",))
        dispatcher.register("account_getHistory", self.account_get_history, ("address", "limit", "before"), required=1,
                            cost=_history_cost)
        dispatcher.register("recharge_get", self.recharge_get, ("request_id",))
        dispatcher.register("contract_get", self.contract_get, ("address",))
        dispatcher.register("order_get", self.order_get, ("order_id",))
        dispatcher.register("governance_get", self.governance_get, ("proposal_id",))
        dispatcher.register("governance_list", self.governance_list)
        dispatcher.register("risk_getRules", self.risk_get_rules)
        dispatcher.register("order_list", self.order_list, ("party", "role", "state", "limit", "before"), required=1,
                            cost=_order_list_cost)
        dispatcher.register("contract_query", self.contract_query,
                            ("address", "function", "args", "caller", "gas_limit"), required=2, cost=_query_cost)

    # --- node and chain -------------------------------------------------------------------

    async def node_status(self, context: Any) -> dict[str, Any]:
        head = self.ledger.head
        return {
            "node_version": NODE_VERSION,
            **views.signing_domain_json(self.ledger.signing_domain),
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
            **views.signing_domain_json(self.ledger.signing_domain),
            "genesis_time_ms": params.genesis_time_ms,
            "fee_account": views.address_text(params.fee_account),
            "assets": [{"code": a.code, "decimals": a.decimals, "min_fee": self.ledger.state().min_fee(a.code)}
                       for a in params.assets],
            "contracts": [{"name": c.name, "address": views.address_text(c.address)} for c in params.contracts],
            "limits": {"tx_bytes_max": limits.tx_bytes_max, "payment_tx_bytes_max": limits.payment_tx_bytes_max,
                       "block_txs_max": limits.block_txs_max, "nonce_window_max": limits.nonce_window_max,
                       "rpc_send_batch_txs_max": limits.rpc_send_batch_txs_max,
                       "contract_gas_max": limits.contract_gas_max, "gas_per_fee_unit": limits.gas_per_fee_unit},
        }

    async def chain_get_validators(self, context: Any, height: Any = None) -> list[dict[str, Any]]:
        """The validators that certify block `height` (default: the next block), in certificate index order."""
        next_height = self.ledger.head.height + 1
        if height is None:
            validators = self.ledger.validators
        elif not is_index(height):
            raise RpcError(INVALID_PARAMS, f"Invalid params: height is a block height (an integer 0..{limits.rpc_index_max})")
        elif height > next_height:
            raise errors.not_found(f"validator set of height {height} (known up to the next block, {next_height})")
        else:
            validators = self.ledger.store.validators_at(height)
        return [{"index": i, "name": v.name, "address": views.address_text(v.address),
                 "public_key": views.hex0x(v.public_key), "role": views.role_name(v.role),
                 "p2p_address": v.p2p_address} for i, v in enumerate(validators)]

    async def chain_get_block(self, context: Any, block: Any = "latest") -> dict[str, Any]:
        store = self.ledger.store
        if block == "latest":
            height = store.head.height
        elif is_index(block):
            height = block
        elif isinstance(block, str):
            found = store.height_of_block(parse_hash_param(block, "block"))
            if found is None:
                raise errors.not_found("block")
            height = found
        else:
            raise RpcError(INVALID_PARAMS, f"Invalid params: block is a height (0..{limits.rpc_index_max}), a 0x block "
                                           "hash, or \"latest\"")
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
        state = self.ledger.state()
        account = state.account(account_address)
        pending = self.ledger.mempool.pending_nonce(account_address, account.nonce)
        result = views.account_json(account_address, account, pending)
        result["suspended"] = state.get(suspension_key(account_address)) is not None
        result["deployer"] = state.get(deployer_key(account_address)) is not None
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
        cursor = _parse_cursor(before)
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


    # --- contracts ----------------------------------------------------------------------------

    def _allow_contract_load(self, code_hash: bytes) -> None:
        """Parsing a contract not in memory takes up to ~50 ms on the event loop: at most a few per second."""
        if runtime.is_loaded(code_hash):
            return
        now = time.monotonic()
        if now - self._loads_window_start >= 1.0:
            self._loads_window_start, self._loads_in_window = now, 0
        if self._loads_in_window >= limits.rpc_contract_loads_per_s_max:
            raise RpcError(errors.TOO_MANY, "too many contracts to load right now; retry in a second")
        self._loads_in_window += 1

    async def contract_get(self, context: Any, address: Any) -> dict[str, Any]:
        contract = parse_address_param(address)
        record = self.ledger.state().get(contract_key(contract))
        if record is None:
            raise errors.not_found("contract")
        self._allow_contract_load(record.code_hash)
        return views.contract_json(contract, record, runtime.program_of(record).public_functions())

    async def contract_query(self, context: Any, address: Any, function: Any, args: Any = None, caller: Any = None,
                             gas_limit: Any = None) -> dict[str, Any]:
        """Run a public function read-only on the committed state: its result, never a change."""
        contract = parse_address_param(address)
        if not isinstance(function, str) or not function.isidentifier():
            raise RpcError(INVALID_PARAMS, "Invalid params: function must be a function name")
        if args is not None and not isinstance(args, list):
            raise RpcError(INVALID_PARAMS, "Invalid params: args must be a JSON array")
        if gas_limit is None:
            gas_limit = limits.contract_query_gas_max
        if type(gas_limit) is not int or not 0 < gas_limit <= limits.contract_query_gas_max:
            raise RpcError(INVALID_PARAMS, f"Invalid params: gas_limit must be 1..{limits.contract_query_gas_max}")
        try:
            values = tuple(views.value_from_json(args or [], "args"))
            encoded = encoding.encode_value(values)
        except (views.InvalidValue, encoding.EncodeError) as error:
            raise RpcError(INVALID_PARAMS, f"Invalid params: {error}") from error
        who = bytes(20) if caller is None else parse_address_param(caller, "caller")
        record = self.ledger.state().get(contract_key(contract))
        if record is not None:
            self._allow_contract_load(record.code_hash)
        outcome = await self._run_query(who, contract, function, encoded, gas_limit)
        return {"value": views.value_json(outcome.value), "gas_used": outcome.gas_used,
                "events": [views.event_json(e) for e in outcome.events]}

    async def _run_query(self, who: bytes, contract: bytes, function: str, encoded: bytes,
                         gas_limit: int) -> runtime.Outcome:
        """Run the query on a VM query thread (node/contracts/sandbox.py) while this loop goes on serving and
        committing; at most `contract_queries_running_max` run and as many wait, the rest are told to retry.
        A query that overlapped a commit is run again on the new state (it read a moving one)."""
        for _ in range(limits.contract_query_attempts_max):
            head = self.ledger.head
            deadline_ns = time.monotonic_ns() + limits.contract_query_ms_max * 1_000_000
            try:
                future = sandbox.submit_query(runtime.call, self.ledger.state(), who, contract, function, encoded,
                                              gas_limit, head.height, head.timestamp_ms, True, NO_VALUE,
                                              deadline_ns)
            except queue.Full:
                raise RpcError(errors.TOO_MANY, "busy: every contract query thread is in use; retry shortly") from None
            try:
                return await asyncio.wrap_future(future)
            except runtime.ContractFailed as failure:
                raise errors.contract_failed(failure.code, failure.message, failure.gas_used) from failure
            except (StaleStateView, HostUnavailable):
                continue
        raise RpcError(errors.TOO_MANY, "busy: the chain moved on during every attempt of this query; retry")


    # --- governance and risk ------------------------------------------------------------------

    def _proposal_json(self, proposal_id: bytes, record: Any) -> dict[str, Any]:
        state = self.ledger.state()
        return views.proposal_json(proposal_id, record, governance.decode_proposal(record),
                                   governance.status_of(record, self.ledger.head.height),
                                   governance.approvals_needed(state, self.ledger.head.height + 1))

    async def governance_get(self, context: Any, proposal_id: Any) -> dict[str, Any]:
        key = parse_hash_param(proposal_id, "proposal_id")
        record = self.ledger.state().get(proposal_key(key))
        if record is None:
            raise errors.not_found("governance proposal")
        return self._proposal_json(key, record)

    async def governance_list(self, context: Any) -> list[dict[str, Any]]:
        """The most recent proposals, newest first."""
        state = self.ledger.state()
        index = state.get(PROPOSAL_INDEX_KEY)
        ids = reversed(index.ids) if index else ()
        return [self._proposal_json(proposal_id, state.get(proposal_key(proposal_id))) for proposal_id in ids]

    async def risk_get_rules(self, context: Any) -> dict[str, Any]:
        rules = risk.rules_of(self.ledger.state())
        return {key: value for key, value in views.action_json(SetRiskRules(rules)).items() if key != "kind"}

    # --- orders -------------------------------------------------------------------------------

    def _orders_contract(self) -> bytes:
        address = self.ledger.params.contract(system.ORDERS)
        if address is None:
            raise errors.not_found("orders contract (this chain's genesis has none)")
        return address

    async def order_get(self, context: Any, order_id: Any) -> dict[str, Any]:
        key = parse_hash_param(order_id, "order_id")
        order = read_order(self.ledger.state(), self._orders_contract(), key)
        if order is None:
            raise errors.not_found("order")
        return views.order_json(key, order)

    async def order_list(self, context: Any, party: Any, role: Any = None, state: Any = None, limit: Any = 20,
                         before: Any = None) -> dict[str, Any]:
        """Orders `party` bought (role "buyer") or sold ("merchant") or either, newest first, optionally in one
        state; `next` is the cursor for the following page (null at the end)."""
        address = parse_address_param(party, "party")
        if role not in (None, "buyer", "merchant"):
            raise RpcError(INVALID_PARAMS, "Invalid params: role must be buyer, merchant or null")
        if state is not None and state not in ORDER_STATES:
            raise RpcError(INVALID_PARAMS, f"Invalid params: state must be one of {', '.join(ORDER_STATES)}")
        if type(limit) is not int or not 1 <= limit <= limits.rpc_history_items_max:
            raise RpcError(INVALID_PARAMS, f"Invalid params: limit must be 1..{limits.rpc_history_items_max}")
        cursor = _parse_cursor(before)
        contract, view = self._orders_contract(), self.ledger.state()
        orders, scanned, next_cursor = [], 0, None
        for height, index, order_id in self.ledger.store.orders_of(address, cursor):
            if len(orders) == limit or scanned == limits.rpc_order_scan_max:
                next_cursor = [height, index + 1]
                break
            scanned += 1
            order = read_order(view, contract, order_id)
            if order is None or (role is not None and order[role] != address) or (
                    state is not None and order["state"] != state):
                continue
            orders.append({**views.order_json(order_id, order), "height": height})
        return {"orders": orders, "next": next_cursor}


# --- prices (node/rpc/budget.py): from the parameters as given, before they are checked ----------------

def _send_cost(tx: Any = None) -> CallCost:
    return CallCost(limits.rpc_cost_units_per_call + limits.rpc_cost_units_per_signature, txs=1)


def _send_batch_cost(txs: Any = None) -> CallCost:
    count = len(txs) if isinstance(txs, list) and len(txs) <= limits.rpc_send_batch_txs_max else 0   # else refused unread
    return CallCost(limits.rpc_cost_units_per_call + count * limits.rpc_cost_units_per_signature, txs=count)


def _page_items(limit: Any) -> int:
    """The items a page asks for (a limit out of range fails the call before it reads anything)."""
    return limit if type(limit) is int and 1 <= limit <= limits.rpc_history_items_max else 0


def _history_cost(address: Any = None, limit: Any = 20, before: Any = None) -> CallCost:
    return CallCost(limits.rpc_cost_units_per_call + _page_items(limit) * limits.rpc_cost_units_per_history_item)


def _order_list_cost(party: Any = None, role: Any = None, state: Any = None, limit: Any = 20,
                     before: Any = None) -> CallCost:
    return CallCost(limits.rpc_cost_units_per_call + _page_items(limit) * limits.rpc_cost_units_per_history_item
                    + limits.rpc_cost_units_per_order_scan)


def _query_cost(address: Any = None, function: Any = None, args: Any = None, caller: Any = None,
                gas_limit: Any = None) -> CallCost:
    gas = gas_limit if type(gas_limit) is int and 0 < gas_limit <= limits.contract_query_gas_max \
        else limits.contract_query_gas_max
    return CallCost(limits.rpc_cost_units_per_call + gas // limits.rpc_cost_gas_per_unit)


def _parse_cursor(before: Any) -> tuple[int, int] | None:
    """A page cursor [height, index] (exclusive upper bound) from a previous page's `next`."""
    if before is None:
        return None
    if not (isinstance(before, list) and len(before) == 2 and all(is_index(v) for v in before)):
        raise RpcError(INVALID_PARAMS, "Invalid params: before is the [height, index] cursor of a page")
    return before[0], before[1]


def is_index(value: Any) -> bool:
    """A height or an index a storage key can hold (a JSON true is not 1)."""
    return type(value) is int and 0 <= value <= limits.rpc_index_max


def _decode_signed(raw: bytes) -> SignedTransaction:
    return encoding.decode(SignedTransaction, raw, limits.tx_bytes_max)
