"""Admin JSON-RPC methods: for the node's operator only (HTTP with the admin token from config.toml).

    admin_mempool([limit])          the oldest pending transactions, with sender, nonce, kind and age
    admin_dropTransaction(hash)     remove a stuck transaction (and its sender's later ones) from the mempool
    admin_setLogLevel(level)        change the node's log level without a restart
    admin_network()                 transport counters and every peer's link state
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from node import limits
from node.app import Ledger
from node.config import LOG_LEVELS
from node.rpc import errors, views
from node.rpc.jsonrpc import INVALID_PARAMS, Dispatcher, RpcError
from node.rpc.methods import parse_hash_param
from node.transactions import kind_name

log = logging.getLogger("paychain.admin")


class AdminMethods:
    def __init__(self, ledger: Ledger, consensus_info: Callable[[], dict[str, Any]]) -> None:
        self.ledger = ledger
        self.consensus_info = consensus_info

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register("admin_mempool", self.admin_mempool, ("limit",), required=0, admin=True)
        dispatcher.register("admin_dropTransaction", self.admin_drop_transaction, ("hash",), admin=True)
        dispatcher.register("admin_setLogLevel", self.admin_set_log_level, ("level",), admin=True)
        dispatcher.register("admin_network", self.admin_network, admin=True)

    async def admin_mempool(self, context: Any, limit: Any = 100) -> dict[str, Any]:
        if type(limit) is not int or not 1 <= limit <= limits.rpc_history_items_max:
            raise RpcError(INVALID_PARAMS, f"Invalid params: limit must be 1..{limits.rpc_history_items_max}")
        mempool = self.ledger.mempool
        now_ms = int(time.monotonic() * 1000)
        oldest = [{"hash": views.hex0x(envelope.hash), "sender": views.address_text(envelope.sender),
                   "nonce": envelope.nonce, "kind": kind_name(envelope.transaction), "bytes": len(envelope.raw),
                   "age_ms": max(0, now_ms - added_ms)} for envelope, added_ms in mempool.entries(limit)]
        return {"txs": len(mempool), "bytes": mempool.bytes, "oldest": oldest}

    async def admin_drop_transaction(self, context: Any, hash: Any) -> dict[str, Any]:
        tx_hash = parse_hash_param(hash, "hash")
        if not self.ledger.mempool.drop(tx_hash):
            raise errors.not_found("pending transaction")
        log.warning("admin dropped transaction %s from the mempool", tx_hash.hex())
        return {"dropped": views.hex0x(tx_hash), "txs": len(self.ledger.mempool)}

    async def admin_set_log_level(self, context: Any, level: Any) -> dict[str, str]:
        if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
            raise RpcError(INVALID_PARAMS, f"Invalid params: level must be one of {', '.join(LOG_LEVELS)}")
        logging.getLogger().setLevel(level.upper())
        log.warning("log level set to %s over admin RPC", level.upper())
        return {"level": level.upper()}

    async def admin_network(self, context: Any) -> dict[str, Any]:
        info = self.consensus_info()
        return {"peers": info.get("peers", []), "p2p": info.get("p2p", {}), "dropped": info.get("dropped", {})}
