"""Stable application error codes: one number per rule, never reused or renumbered.

JSON-RPC reserves -32768..-32000 for the protocol; Paychain's own codes are positive
and grouped: 1xxx lookups, 2xxx transaction admission, 3xxx subscriptions.
"""

from __future__ import annotations

from node.rpc.jsonrpc import RATE_LIMITED, UNAUTHORIZED, RpcError  # noqa: F401 (re-exported)

NOT_FOUND = 1001
INVALID_ARGUMENT = 1002
TOO_MANY = 1003
# UNAUTHORIZED (1004: an admin method without the admin token) and RATE_LIMITED (1005: the client's cost
# budget cannot pay for the request yet, data.retry_after_ms says when it can) are defined with the
# dispatcher, which checks them, and imported above.

TRANSACTION_REJECTED = 2000
"""Fallback for a rule not listed below."""
TRANSACTION_RULE_CODES: dict[str, int] = {
    "malformed": 2001,
    "wrong_chain": 2002,
    "bad_signature": 2003,
    "nonce_used": 2004,
    "nonce_too_far": 2005,
    "nonce_taken": 2006,
    "insufficient_funds": 2007,
    "fee_too_low": 2008,
    "unknown_asset": 2009,
    "mempool_full": 2010,
    "already_known": 2011,
    "already_committed": 2012,
    "not_registered": 2013,
    "zero_amount": 2014,
    "self_transfer": 2015,
    "unknown_role": 2016,
    "missing_reference": 2017,
    "cannot_pay_fee": 2018,
    "bad_nonce": 2019,
    "fee_overflow": 2020,
    "too_large": 2021,
    "zero_gas": 2022,
    "bad_function": 2023,
    "value_asset_without_value": 2024,
    "value_without_asset": 2025,
}
assert len(set(TRANSACTION_RULE_CODES.values())) == len(TRANSACTION_RULE_CODES)

CONTRACT_FAILED = 4001
"""A read-only contract query failed (revert, out of gas, a VM rule); data.rule names it."""

SUBSCRIPTION_UNKNOWN_TOPIC = 3001
SUBSCRIPTION_LIMIT = 3002
SUBSCRIPTION_HTTP = 3003
SUBSCRIPTION_DUPLICATE = 3004
"""The connection already has a subscription to this topic with this filter (data: none; the message names it)."""


def transaction_rejected(rule: str, message: str) -> RpcError:
    code = TRANSACTION_RULE_CODES.get(rule, TRANSACTION_REJECTED)
    return RpcError(code, f"transaction rejected ({rule}): {message}", {"rule": rule})


def contract_failed(rule: str, message: str, gas_used: int) -> RpcError:
    return RpcError(CONTRACT_FAILED, f"contract query failed ({rule}): {message}", {"rule": rule, "gas_used": gas_used})


def not_found(what: str) -> RpcError:
    return RpcError(NOT_FOUND, f"{what} not found")


def invalid_argument(message: str) -> RpcError:
    return RpcError(INVALID_ARGUMENT, message)
