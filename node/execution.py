"""The state transition: a block and a state in, a new state and receipts out.

Nothing here touches disk, clock or network. Two kinds of failure:
- a transaction that may not be in a block at all (wrong nonce, fee it cannot pay)
  raises InvalidTransaction; in a proposed block that makes the block invalid;
- a transaction that is well-formed and pays its fee but breaks a business rule
  (overspend, unknown request, wrong role) is included with a failed receipt:
  its fee is charged, its nonce is used, nothing else changes.
Each rule is one `if` that names the rule; all checks run before the first write,
so a failed transaction never leaves half of its effects behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from node import blocks, crypto, encoding, governance, limits, risk
from node.blocks import Block, Event, Header, InvalidBlock, Receipt
from node.state import (RECHARGE_PENDING, RECHARGE_POSTED, RECHARGE_VOIDED, Account, Allowance, RechargeRecord, State,
                        Supply, Suspension, allowance_key, contract_key, recharge_key, supply_key, suspension_key)
from node.contracts import runtime
from node.contracts.host import AttachedValue
from node.transactions import (ApproveSpend, CallContract, DeployContract, Envelope, InvalidTransaction, RechargePost,
                               GovernanceApprove, GovernancePropose, RechargeRequest, RechargeVoid, Register, Role,
                               SetMerchantStatus, Transfer, Withdraw, attached_value_of, gas_limit_of,
                               open_transaction, required_fee)


class Rejected(Exception):
    """A business rule failed: the transaction is included with a failed receipt."""

    def __init__(self, code: str, message: str, gas_used: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.gas_used = gas_used


@dataclass(frozen=True, slots=True)
class BlockContext:
    height: int
    timestamp_ms: int


def _u64(value: int) -> bytes:
    return encoding.encode_uint_be(value, 8)


# --- transactions ----------------------------------------------------------------------

def check_fee_and_nonce(state: State, envelope: Envelope) -> Account:
    """Rules every included transaction must meet; returns the sender's account."""
    transaction = envelope.transaction
    min_fee = state.min_fee(transaction.fee_asset)
    if min_fee is None:
        raise InvalidTransaction("unknown_asset", f"fee asset {transaction.fee_asset!r} is not defined in genesis")
    value_asset, value = attached_value_of(transaction)
    if value and state.base.params.asset(value_asset) is None:
        raise InvalidTransaction("unknown_asset", f"attached value asset {value_asset!r} is not defined in genesis")
    minimum = required_fee(transaction, min_fee)
    if transaction.fee < minimum:
        raise InvalidTransaction("fee_too_low", f"fee {transaction.fee} is below the minimum {minimum} "
                                                f"{transaction.fee_asset}"
                                                + (" for its gas limit" if minimum > min_fee else ""))
    sender = state.account(envelope.sender)
    if transaction.nonce != sender.nonce:
        raise InvalidTransaction("bad_nonce", f"nonce {transaction.nonce} does not match the account nonce "
                                              f"{sender.nonce}")
    if sender.balance_of(transaction.fee_asset) < transaction.fee:
        raise InvalidTransaction("cannot_pay_fee", f"balance cannot pay the fee of {transaction.fee} "
                                                   f"{transaction.fee_asset}")
    return sender


def apply_transaction(state: State, envelope: Envelope, context: BlockContext) -> Receipt:
    """Apply one transaction to `state` in place; raises InvalidTransaction if it may not be included."""
    transaction = envelope.transaction
    sender = check_fee_and_nonce(state, envelope)
    fee_account = state.base.params.fee_account
    if state.account(fee_account).balance_of(transaction.fee_asset) + transaction.fee > limits.amount_max:
        raise InvalidTransaction("fee_overflow", "the fee account's balance would exceed the maximum")
    sender = sender.with_balance(transaction.fee_asset, sender.balance_of(transaction.fee_asset) - transaction.fee,
                                 nonce=sender.nonce + 1)
    state.set_account(envelope.sender, sender)
    if transaction.fee:
        collector = state.account(fee_account)
        state.set_account(fee_account, collector.with_balance(
            transaction.fee_asset, collector.balance_of(transaction.fee_asset) + transaction.fee))
        if fee_account == envelope.sender:
            sender = state.account(envelope.sender)
    try:
        events, gas_used = _apply_body(state, envelope, sender, context)
    except Rejected as rejection:
        return Receipt(envelope.hash, False, rejection.code, rejection.message, transaction.fee_asset,
                       transaction.fee, (), rejection.gas_used)
    return Receipt(envelope.hash, True, "", "", transaction.fee_asset, transaction.fee, tuple(events), gas_used)


def _require_known_asset(state: State, asset: str) -> None:
    if state.base.params.asset(asset) is None:
        raise Rejected("unknown_asset", f"asset {asset!r} is not defined in genesis")


def _require_registered(account: Account, who: str) -> None:
    if account.role == 0:
        raise Rejected("not_registered", f"{who} is not a registered (KYC) account")


def _require_gateway(account: Account, who: str) -> None:
    if account.role != Role.GATEWAY:
        raise Rejected("not_gateway", f"{who} is not a registered gateway")


def _apply_body(state: State, envelope: Envelope, sender: Account,
                context: BlockContext) -> tuple[list[Event], int]:
    """The transaction's own effects: (events, contract gas used)."""
    body = envelope.transaction.body
    if isinstance(body, Transfer):
        return _apply_transfer(state, envelope.sender, sender, body, context), 0
    if isinstance(body, Register):
        return _apply_register(state, envelope.sender, sender, body), 0
    if isinstance(body, RechargeRequest):
        return _apply_recharge_request(state, envelope, sender, body, context), 0
    if isinstance(body, (RechargePost, RechargeVoid)):
        return _apply_recharge_resolution(state, envelope.sender, body), 0
    if isinstance(body, Withdraw):
        return _apply_withdraw(state, envelope.sender, sender, body, context), 0
    if isinstance(body, (DeployContract, CallContract)):
        return _apply_contract(state, envelope, body, context)
    if isinstance(body, SetMerchantStatus):
        return _apply_merchant_status(state, envelope.sender, sender, body, context), 0
    if isinstance(body, (GovernancePropose, GovernanceApprove)):
        return _apply_governance(state, envelope, body, context), 0
    if isinstance(body, ApproveSpend):
        return _apply_approve_spend(state, envelope.sender, body), 0
    raise AssertionError(f"unhandled transaction kind {type(body).__name__}")


def _check_risk(state: State, payer: bytes, recipient: bytes | None, asset: str, amount: int,
                context: BlockContext) -> None:
    try:
        risk.check_payment(state, payer, recipient, asset, amount, context.timestamp_ms)
    except risk.RiskViolation as violation:
        raise Rejected(violation.code, violation.message) from violation


def _apply_transfer(state: State, sender_address: bytes, sender: Account, body: Transfer,
                    context: BlockContext) -> list[Event]:
    _require_known_asset(state, body.asset)
    _require_registered(sender, "sender")
    recipient = state.account(body.recipient)
    _require_registered(recipient, "recipient")
    if sender.balance_of(body.asset) < body.amount:
        raise Rejected("insufficient_funds", f"balance {sender.balance_of(body.asset)} {body.asset} is less than "
                                             f"the amount {body.amount}")
    if recipient.balance_of(body.asset) + body.amount > limits.amount_max:
        raise Rejected("balance_overflow", f"the recipient's {body.asset} balance would exceed the maximum")
    _check_risk(state, sender_address, body.recipient, body.asset, body.amount, context)
    risk.record_payment(state, sender_address, body.asset, body.amount, context.timestamp_ms)
    state.set_account(sender_address, sender.with_balance(body.asset, sender.balance_of(body.asset) - body.amount))
    state.set_account(body.recipient, recipient.with_balance(body.asset, recipient.balance_of(body.asset) + body.amount))
    return [Event("transfer", (sender_address, body.recipient, body.asset.encode(), _u64(body.amount)))]


def _apply_register(state: State, sender_address: bytes, sender: Account, body: Register) -> list[Event]:
    _require_gateway(sender, "sender")
    target = state.account(body.account)
    if target.role != 0:
        raise Rejected("already_registered", "the account is already registered")
    state.set_account(body.account, Account(target.nonce, body.role, body.kyc_hash, sender_address, target.balances))
    return [Event("registered", (body.account, _u64(body.role), sender_address))]


def _apply_recharge_request(state: State, envelope: Envelope, sender: Account, body: RechargeRequest,
                            context: BlockContext) -> list[Event]:
    _require_known_asset(state, body.asset)
    _require_registered(sender, "sender")
    _require_gateway(state.account(body.gateway), "the chosen gateway")
    record = RechargeRecord(envelope.sender, body.gateway, body.asset, body.amount, RECHARGE_PENDING,
                            body.reference, "", context.height)
    state.put(recharge_key(envelope.hash), record)
    return [Event("recharge_requested", (envelope.hash, envelope.sender, body.gateway))]


def _apply_recharge_resolution(state: State, sender_address: bytes,
                               body: RechargePost | RechargeVoid) -> list[Event]:
    record = state.get(recharge_key(body.request_id))
    if record is None:
        raise Rejected("unknown_request", "no recharge request with this id")
    if record.gateway != sender_address:
        raise Rejected("not_request_gateway", "only the gateway named in the request may resolve it")
    if record.status != RECHARGE_PENDING:
        raise Rejected("request_resolved", "the recharge request was already posted or voided")
    if isinstance(body, RechargeVoid):
        state.put(recharge_key(body.request_id), _resolved(record, RECHARGE_VOIDED, body.reason))
        return [Event("recharge_voided", (body.request_id, record.user))]
    supply = state.supply(record.asset)
    user = state.account(record.user)
    if supply + record.amount > limits.amount_max or user.balance_of(record.asset) + record.amount > limits.amount_max:
        raise Rejected("supply_overflow", f"posting would exceed the maximum {record.asset} amount")
    state.set_account(record.user, user.with_balance(record.asset, user.balance_of(record.asset) + record.amount))
    state.put(supply_key(record.asset), Supply(supply + record.amount))
    state.put(recharge_key(body.request_id), _resolved(record, RECHARGE_POSTED, body.reference))
    return [Event("mint", (record.user, record.asset.encode(), _u64(record.amount), body.request_id))]


def _resolved(record: RechargeRecord, status: int, resolution: str) -> RechargeRecord:
    return RechargeRecord(record.user, record.gateway, record.asset, record.amount, status,
                          record.request_reference, resolution, record.height)


def _apply_withdraw(state: State, sender_address: bytes, sender: Account, body: Withdraw,
                    context: BlockContext) -> list[Event]:
    _require_known_asset(state, body.asset)
    _require_registered(sender, "sender")
    _require_gateway(state.account(body.gateway), "the chosen gateway")
    if sender.balance_of(body.asset) < body.amount:
        raise Rejected("insufficient_funds", f"balance {sender.balance_of(body.asset)} {body.asset} is less than "
                                             f"the amount {body.amount}")
    _check_risk(state, sender_address, None, body.asset, body.amount, context)
    risk.record_payment(state, sender_address, body.asset, body.amount, context.timestamp_ms)
    state.set_account(sender_address, sender.with_balance(body.asset, sender.balance_of(body.asset) - body.amount))
    state.put(supply_key(body.asset), Supply(state.supply(body.asset) - body.amount))
    return [Event("burn", (sender_address, body.asset.encode(), _u64(body.amount), body.gateway))]


def _apply_merchant_status(state: State, sender_address: bytes, sender: Account, body: SetMerchantStatus,
                           context: BlockContext) -> list[Event]:
    _require_gateway(sender, "sender")
    if state.account(body.merchant).role != Role.MERCHANT:
        raise Rejected("not_merchant", "the account is not a registered merchant")
    suspended = state.get(suspension_key(body.merchant)) is not None
    if body.active != suspended:
        raise Rejected("status_unchanged", f"the merchant is already {'active' if body.active else 'suspended'}")
    if body.active:
        state.put(suspension_key(body.merchant), None)
        return [Event("merchant_activated", (body.merchant, sender_address))]
    state.put(suspension_key(body.merchant), Suspension(sender_address, body.reason, context.height))
    return [Event("merchant_suspended", (body.merchant, sender_address))]


def _apply_governance(state: State, envelope: Envelope, body: GovernancePropose | GovernanceApprove,
                      context: BlockContext) -> list[Event]:
    try:
        if isinstance(body, GovernancePropose):
            return governance.propose(state, envelope.hash, envelope.sender, body, context.height)
        return governance.approve(state, envelope.sender, body, context.height)
    except governance.GovernanceRejected as rejection:
        raise Rejected(rejection.code, rejection.message) from rejection


def _apply_approve_spend(state: State, sender_address: bytes, body: ApproveSpend) -> list[Event]:
    _require_known_asset(state, body.asset)
    if state.get(contract_key(body.contract)) is None:
        raise Rejected("unknown_contract", "no contract at this address: an allowance is given to a deployed "
                                           "contract")
    state.put(allowance_key(sender_address, body.contract, body.asset),
              Allowance(body.amount) if body.amount else None)
    return [Event("allowance_set", (sender_address, body.contract, body.asset.encode(), _u64(body.amount)))]


def _apply_contract(state: State, envelope: Envelope, body: DeployContract | CallContract,
                    context: BlockContext) -> tuple[list[Event], int]:
    value = AttachedValue(body.value_asset, body.value)
    try:
        if isinstance(body, DeployContract):
            _, outcome = runtime.deploy(state, envelope.sender, envelope.nonce, body.source, body.init_args,
                                        body.gas_limit, context.height, context.timestamp_ms, value=value)
        else:
            outcome = runtime.call(state, envelope.sender, body.contract, body.function, body.args, body.gas_limit,
                                   context.height, context.timestamp_ms, value=value)
    except runtime.ContractFailed as failure:
        raise Rejected(failure.code, failure.message, failure.gas_used) from failure
    return list(outcome.events), outcome.gas_used


# --- blocks ------------------------------------------------------------------------------

def validate_header(parent: Header | None, parent_hash: bytes, header: Header, chain_id: str) -> None:
    """Rules linking a header to its parent (None for the first block after genesis)."""
    if header.chain_id != chain_id:
        raise InvalidBlock(f"block is for chain {header.chain_id!r}")
    expected_height = 1 if parent is None else parent.height + 1
    if header.height != expected_height:
        raise InvalidBlock(f"block height {header.height}, expected {expected_height}")
    if header.parent_hash != parent_hash:
        raise InvalidBlock("block parent hash is not the last committed block")
    if parent is not None and header.timestamp_ms < parent.timestamp_ms:
        raise InvalidBlock("block timestamp is earlier than its parent's")


def apply_block(state: State, block: Block,
                opened: Mapping[bytes, Envelope] | None = None) -> tuple[State, tuple[Receipt, ...]]:
    """Execute every transaction of `block` on a copy of `state`; raise InvalidBlock on any rule broken.

    `opened` maps tx hash -> already verified envelope (from the mempool) to skip decoding twice.
    The header's roots are checked here except the state root, which the caller compares
    after computing the commitment (`CommittedState.tree`).
    """
    header = block.header
    if header.tx_count != len(block.transactions):
        raise InvalidBlock("header tx_count does not match the body")
    envelopes = open_block_transactions(block, state.base.signing_domain, opened)
    if blocks.tx_root([e.hash for e in envelopes]) != header.tx_root:
        raise InvalidBlock("tx root does not match the transactions")
    new_state = State(state.base, dict(state.changes))
    context = BlockContext(header.height, header.timestamp_ms)
    receipts = []
    gas_used = 0
    contracts: set[bytes] = set()
    for index, envelope in enumerate(envelopes):
        if gas_used + gas_limit_of(envelope.transaction) > limits.block_gas_max:
            raise InvalidBlock(f"transaction {index}'s gas limit does not fit the block's remaining gas")
        if not _fits_contracts(contracts, _contract_of(envelope)):
            raise InvalidBlock(f"transaction {index} makes the block touch more than {limits.block_contracts_max} "
                               "contracts")
        try:
            receipts.append(apply_transaction(new_state, envelope, context))
        except InvalidTransaction as error:
            raise InvalidBlock(f"transaction {index} may not be included: {error.message}") from error
        gas_used += receipts[-1].gas_used
    if blocks.receipts_root(receipts) != header.receipts_root:
        raise InvalidBlock("receipts root does not match execution")
    return new_state, tuple(receipts)


def _contract_of(envelope: Envelope) -> bytes | None:
    """The contract a transaction calls, its own hash for a deploy (a new contract), else None."""
    body = envelope.transaction.body
    if isinstance(body, CallContract):
        return body.contract
    return envelope.hash if isinstance(body, DeployContract) else None


def _fits_contracts(contracts: set[bytes], contract: bytes | None) -> bool:
    """Count `contract` into the block's `contracts`, unless that passes the block's limit (then False)."""
    if contract is None or contract in contracts:
        return True
    if len(contracts) >= limits.block_contracts_max:
        return False
    contracts.add(contract)
    return True


def open_block_transactions(block: Block, domain: crypto.SigningDomain,
                            opened: Mapping[bytes, Envelope] | None = None) -> tuple[Envelope, ...]:
    """Decode and verify a block's transactions for the network `domain`, reusing already verified envelopes."""
    envelopes = []
    for index, raw in enumerate(block.transactions):
        envelope = None if opened is None else opened.get(crypto.hash_bytes(raw))
        if envelope is None:
            try:
                envelope = open_transaction(raw, domain)
            except InvalidTransaction as error:
                raise InvalidBlock(f"transaction {index} is invalid: {error.message}") from error
        envelopes.append(envelope)
    return tuple(envelopes)


def execute_candidates(state: State, candidates: Iterable[Envelope], context: BlockContext, txs_max: int,
                       bytes_max: int) -> tuple[State, list[Envelope], list[Receipt], list[tuple[Envelope, str]]]:
    """For a proposer: apply candidates in order, skipping those that may not be included.

    Returns the new state, the included envelopes, their receipts, and (envelope, code) for skipped ones.
    """
    new_state = State(state.base, dict(state.changes))
    included: list[Envelope] = []
    receipts: list[Receipt] = []
    skipped: list[tuple[Envelope, str]] = []
    size = 0
    gas = 0
    contracts: set[bytes] = set()
    for envelope in candidates:
        if len(included) >= txs_max or size + len(envelope.raw) > bytes_max:
            break
        if gas + gas_limit_of(envelope.transaction) > limits.block_gas_max:
            continue  # waits for a later block
        if not _fits_contracts(contracts, _contract_of(envelope)):
            continue  # waits for a later block
        try:
            receipts.append(apply_transaction(new_state, envelope, context))
        except InvalidTransaction as error:
            skipped.append((envelope, error.code))
            continue
        included.append(envelope)
        size += len(envelope.raw)
        gas += receipts[-1].gas_used
    return new_state, included, receipts, skipped
