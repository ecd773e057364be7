"""JSON shapes of chain objects, shared by RPC responses and WebSocket notifications.

Hashes and keys are 0x-prefixed hex, addresses are checksummed text, amounts are
integers in minor units.
"""

from __future__ import annotations

from typing import Any

from node import crypto, encoding
from node.blocks import Block, CommitCertificate, Event, Header, Receipt
from node.state import RECHARGE_STATUS_NAMES, Account, RechargeRecord
from node.transactions import (ROLE_NAMES, RechargePost, RechargeRequest, RechargeVoid, Register, Role, Transaction,
                               Transfer, Withdraw, kind_name)


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def address_text(address: bytes) -> str:
    return crypto.format_address(address)


def role_name(role: int) -> str | None:
    return ROLE_NAMES.get(Role(role)) if role else None


def header_json(header: Header, block_hash: bytes) -> dict[str, Any]:
    return {
        "hash": hex0x(block_hash),
        "chain_id": header.chain_id,
        "height": header.height,
        "view": header.view,
        "parent_hash": hex0x(header.parent_hash),
        "proposer": address_text(header.proposer),
        "timestamp_ms": header.timestamp_ms,
        "tx_count": header.tx_count,
        "tx_root": hex0x(header.tx_root),
        "receipts_root": hex0x(header.receipts_root),
        "state_root": hex0x(header.state_root),
    }


def certificate_json(certificate: CommitCertificate) -> dict[str, Any]:
    return {
        "height": certificate.height,
        "view": certificate.view,
        "block_hash": hex0x(certificate.block_hash),
        "signatures": [{"validator_index": s.validator_index, "signature": hex0x(s.signature)}
                       for s in certificate.signatures],
        "encoded": hex0x(encoding.encode(certificate)),
    }


def block_json(block: Block, block_hash: bytes, certificate: CommitCertificate | None,
               tx_hashes: list[bytes]) -> dict[str, Any]:
    return {
        "header": header_json(block.header, block_hash),
        "transactions": [hex0x(h) for h in tx_hashes],
        "certificate": None if certificate is None else certificate_json(certificate),
    }


def body_json(transaction: Transaction) -> dict[str, Any]:
    body = transaction.body
    if isinstance(body, Transfer):
        return {"recipient": address_text(body.recipient), "asset": body.asset, "amount": body.amount}
    if isinstance(body, Register):
        return {"account": address_text(body.account), "role": role_name(body.role) or body.role,
                "kyc_hash": hex0x(body.kyc_hash)}
    if isinstance(body, RechargeRequest):
        return {"gateway": address_text(body.gateway), "asset": body.asset, "amount": body.amount,
                "reference": body.reference}
    if isinstance(body, RechargePost):
        return {"request_id": hex0x(body.request_id), "reference": body.reference}
    if isinstance(body, RechargeVoid):
        return {"request_id": hex0x(body.request_id), "reason": body.reason}
    if isinstance(body, Withdraw):
        return {"gateway": address_text(body.gateway), "asset": body.asset, "amount": body.amount,
                "payout_reference": body.payout_reference}
    raise AssertionError(type(body))


def transaction_json(transaction: Transaction, sender: bytes) -> dict[str, Any]:
    return {
        "kind": kind_name(transaction),
        "chain_id": transaction.chain_id,
        "sender": address_text(sender),
        "nonce": transaction.nonce,
        "fee_asset": transaction.fee_asset,
        "fee": transaction.fee,
        "body": body_json(transaction),
    }


_EVENT_FIELDS = {
    "transfer": ("from", "to", "asset", "amount"),
    "registered": ("account", "role", "gateway"),
    "recharge_requested": ("request_id", "user", "gateway"),
    "recharge_voided": ("request_id", "user"),
    "mint": ("to", "asset", "amount", "request_id"),
    "burn": ("from", "asset", "amount", "gateway"),
}


def event_json(event: Event) -> dict[str, Any]:
    names = _EVENT_FIELDS.get(event.name, tuple(f"field{i}" for i in range(len(event.fields))))
    values: dict[str, Any] = {"name": event.name}
    for name, raw in zip(names, event.fields):
        if name in ("from", "to", "account", "user", "gateway"):
            values[name] = address_text(raw)
        elif name in ("amount",):
            values[name] = encoding.decode_uint_be(raw)
        elif name == "role":
            values[name] = role_name(encoding.decode_uint_be(raw))
        elif name == "asset":
            values[name] = raw.decode()
        else:
            values[name] = hex0x(raw)
    return values


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    return {
        "tx_hash": hex0x(receipt.tx_hash),
        "success": receipt.success,
        "code": receipt.code,
        "message": receipt.message,
        "fee_asset": receipt.fee_asset,
        "fee_paid": receipt.fee_paid,
        "events": [event_json(e) for e in receipt.events],
    }


def account_json(address: bytes, account: Account, pending_nonce: int) -> dict[str, Any]:
    return {
        "address": address_text(address),
        "nonce": account.nonce,
        "pending_nonce": pending_nonce,
        "role": role_name(account.role),
        "registered": account.role != 0,
        "kyc_hash": hex0x(account.kyc_hash) if account.kyc_hash else None,
        "registered_by": address_text(account.registered_by) if any(account.registered_by) else None,
        "balances": {b.asset: b.amount for b in account.balances},
    }


def recharge_json(request_id: bytes, record: RechargeRecord) -> dict[str, Any]:
    return {
        "request_id": hex0x(request_id),
        "user": address_text(record.user),
        "gateway": address_text(record.gateway),
        "asset": record.asset,
        "amount": record.amount,
        "status": RECHARGE_STATUS_NAMES[record.status],
        "reference": record.request_reference,
        "resolution": record.resolution,
        "height": record.height,
    }
