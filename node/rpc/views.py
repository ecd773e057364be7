"""JSON shapes of chain objects, shared by RPC responses and WebSocket notifications.

Hashes and keys are 0x-prefixed hex, addresses are checksummed text, amounts are
integers in minor units.
"""

from __future__ import annotations

from typing import Any

from node import crypto, encoding, limits
from node.blocks import Block, CommitCertificate, Event, Header, Receipt
from node.contracts.values_json import (InvalidValue, encoded_value_json, value_from_json,  # noqa: F401
                                        value_json)   # (re-exported: RPC methods parse and shape values through views)
from node.state import RECHARGE_STATUS_NAMES, Account, ContractRecord, RechargeRecord
from node.transactions import (ACTION_NAMES, ROLE_NAMES, Action, AddValidator, ApproveSpend, CallContract,
                               DeployContract, GovernanceApprove, GovernancePropose, RechargePost, RechargeRequest,
                               RechargeVoid, Register, RemoveValidator, Role, SetBlocked, SetDeployer,
                               SetMerchantStatus, SetMinFee, SetRiskRules, Transaction, Transfer, Withdraw, kind_name)


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def address_text(address: bytes) -> str:
    return crypto.format_address(address)


def signing_domain_json(domain: crypto.SigningDomain) -> dict[str, str]:
    """How the RPC names a network: its chain id and genesis hash, what every signature on it is made for."""
    return {"chain_id": domain.chain_id, "genesis_hash": hex0x(domain.genesis_hash)}


def signing_domain_from_json(answer: Any) -> crypto.SigningDomain:
    """The signing domain `signing_domain_json` wrote (in `node_status`, `chain_getParams`, a quote file…);
    ValueError if `answer` names none."""
    try:
        genesis_hash = encoding.parse_hex(answer["genesis_hash"], "genesis_hash", crypto.HASH_BYTES)
        return crypto.SigningDomain(answer["chain_id"], genesis_hash)
    except (KeyError, TypeError, ValueError) as error:  # DecodeError is a ValueError
        raise ValueError(f"no network to sign for (chain_id and genesis_hash): {error!r}") from error


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
    if isinstance(body, DeployContract):
        return {"code_hash": hex0x(crypto.hash_bytes(body.source.encode())), "source_bytes": len(body.source.encode()),
                "init_args": encoded_value_json(body.init_args), "gas_limit": body.gas_limit,
                "value_asset": body.value_asset, "value": body.value}
    if isinstance(body, CallContract):
        return {"contract": address_text(body.contract), "function": body.function,
                "args": encoded_value_json(body.args), "gas_limit": body.gas_limit,
                "value_asset": body.value_asset, "value": body.value}
    if isinstance(body, ApproveSpend):
        return {"contract": address_text(body.contract), "asset": body.asset, "amount": body.amount}
    if isinstance(body, SetMerchantStatus):
        return {"merchant": address_text(body.merchant), "active": body.active, "reason": body.reason}
    if isinstance(body, GovernancePropose):
        return {"action": action_json(body.action), "voting_blocks": body.voting_blocks}
    if isinstance(body, GovernanceApprove):
        return {"proposal_id": hex0x(body.proposal_id)}
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
    "contract_deployed": ("contract", "deployer"),
    "escrow_held": ("payer", "contract", "asset", "amount"),
    "escrow_released": ("contract", "to", "asset", "amount"),
    "escrow_refunded": ("contract", "to", "asset", "amount"),
    "merchant_suspended": ("merchant", "gateway"),
    "merchant_activated": ("merchant", "gateway"),
    "proposal_created": ("proposal_id", "proposer", "action"),
    "proposal_approved": ("proposal_id", "operator"),
    "proposal_executed": ("proposal_id", "action"),
    "allowance_set": ("account", "contract", "asset", "amount"),
}
_ADDRESS_FIELDS = frozenset({"from", "to", "account", "user", "gateway", "contract", "deployer", "payer", "merchant",
                             "proposer", "operator"})


def event_json(event: Event) -> dict[str, Any]:
    if event.name not in _EVENT_FIELDS and len(event.fields) == 2 and len(event.fields[0]) == 20:
        # a contract's own event: (contract, encoded data)
        return {"name": event.name, "contract": address_text(event.fields[0]),
                "data": encoded_value_json(event.fields[1])}
    names = _EVENT_FIELDS.get(event.name, tuple(f"field{i}" for i in range(len(event.fields))))
    values: dict[str, Any] = {"name": event.name}
    for name, raw in zip(names, event.fields):
        if name in _ADDRESS_FIELDS:
            values[name] = address_text(raw)
        elif name in ("amount",):
            values[name] = encoding.decode_uint_be(raw)
        elif name == "role":
            values[name] = role_name(encoding.decode_uint_be(raw))
        elif name in ("asset", "action"):
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
        "gas_used": receipt.gas_used,
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


def contract_json(address: bytes, record: ContractRecord, functions: tuple[str, ...]) -> dict[str, Any]:
    return {
        "address": address_text(address),
        "deployer": address_text(record.deployer),
        "code_hash": hex0x(record.code_hash),
        "height": record.height,
        "functions": list(functions),
        "source": record.source,
    }


def order_json(order_id: bytes, order: dict[str, Any]) -> dict[str, Any]:
    """An order of the orders contract (its storage record), addresses as text."""
    shaped: dict[str, Any] = {"order_id": hex0x(order_id)}
    for key, value in order.items():
        if key in ("buyer", "merchant"):
            shaped[key] = address_text(value)
        else:
            shaped[key] = value_json(value)
    return shaped


def action_json(action: Action) -> dict[str, Any]:
    """A governance action."""
    shaped: dict[str, Any] = {"kind": ACTION_NAMES[type(action)]}
    if isinstance(action, SetRiskRules):
        shaped["limits"] = [{"role": role_name(limit.role), "asset": limit.asset, "per_tx_max": limit.per_tx_max,
                             "daily_max": limit.daily_max} for limit in action.rules.limits]
        shaped["velocity_payments_max"] = action.rules.velocity_payments_max
        shaped["velocity_window_ms"] = action.rules.velocity_window_ms
    elif isinstance(action, SetBlocked):
        shaped.update(account=address_text(action.account), blocked=action.blocked, reason=action.reason)
    elif isinstance(action, SetDeployer):
        shaped.update(account=address_text(action.account), granted=action.granted)
    elif isinstance(action, SetMinFee):
        shaped.update(asset=action.asset, min_fee=action.min_fee)
    elif isinstance(action, AddValidator):
        shaped.update(name=action.validator.name, public_key=hex0x(action.validator.public_key),
                      role=role_name(action.validator.role), p2p_address=action.validator.p2p_address)
    elif isinstance(action, RemoveValidator):
        shaped.update(public_key=hex0x(action.public_key))
    return shaped


def proposal_json(proposal_id: bytes, record: Any, body: GovernancePropose, status: str,
                  approvals_needed: int) -> dict[str, Any]:
    return {
        "proposal_id": hex0x(proposal_id),
        "action": action_json(body.action),
        "proposer": address_text(record.proposer),
        "approvals": [address_text(a) for a in record.approvals],
        "approvals_needed": approvals_needed,
        "status": status,
        "created_height": record.created_height,
        "expires_height": record.expires_height,
    }
