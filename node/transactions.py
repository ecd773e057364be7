"""The closed set of transaction kinds, their signing payload, and stateless validation.

A transaction is `SignedTransaction(transaction, signature)`; the signature covers the
signing domain (chain id and genesis hash), the transaction type tag and the canonical
encoding of `transaction` (see `crypto.sign`). Stateless checks (shape, signature, chain id)
live here; checks that need the ledger (nonce, balance, roles) live in `execution.py`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from node import crypto, encoding, limits
from node.encoding import (ADDRESS, AMOUNT, ASSET, CHAIN_ID, HASH, MEMO, PUBLIC_KEY, SIGNATURE, Bool, Bytes, Struct,
                           Tagged, Text, UInt, check_schema)
from node.state import RiskRules
from node.validators import ValidatorInfo


class InvalidTransaction(Exception):
    """A transaction that breaks a rule; `code` is stable, the message names the rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Role(enum.IntEnum):
    """What a registered account is allowed to do."""

    USER = 1
    MERCHANT = 2
    GATEWAY = 3


ROLE_NAMES = {role: role.name.lower() for role in Role}


def parse_role(text: str) -> Role:
    for role, name in ROLE_NAMES.items():
        if name == text:
            return role
    raise ValueError(f"unknown role {text!r}: one of {', '.join(ROLE_NAMES.values())}")


ROLE = UInt(max(Role))


# --- bodies ----------------------------------------------------------------------------

@check_schema
@dataclass(frozen=True, slots=True)
class Transfer:
    """Move `amount` of `asset` from the sender to `recipient`."""

    TAG: ClassVar[int] = 1
    SCHEMA: ClassVar = (ADDRESS, ASSET, AMOUNT)
    recipient: bytes
    asset: str
    amount: int


@check_schema
@dataclass(frozen=True, slots=True)
class Register:
    """A gateway attests that `account` passed KYC: only a hash of the identity data is stored."""

    TAG: ClassVar[int] = 2
    SCHEMA: ClassVar = (ADDRESS, ROLE, HASH)
    account: bytes
    role: int
    kyc_hash: bytes


@check_schema
@dataclass(frozen=True, slots=True)
class RechargeRequest:
    """A user asks `gateway` to credit `amount` of `asset` once the off-chain funds arrive."""

    TAG: ClassVar[int] = 3
    SCHEMA: ClassVar = (ADDRESS, ASSET, AMOUNT, MEMO)
    gateway: bytes
    asset: str
    amount: int
    reference: str


@check_schema
@dataclass(frozen=True, slots=True)
class RechargePost:
    """The gateway confirms the funds arrived: the request's amount is minted to the user."""

    TAG: ClassVar[int] = 4
    SCHEMA: ClassVar = (HASH, MEMO)
    request_id: bytes
    reference: str


@check_schema
@dataclass(frozen=True, slots=True)
class RechargeVoid:
    """The gateway declines a recharge request; nothing is minted."""

    TAG: ClassVar[int] = 5
    SCHEMA: ClassVar = (HASH, MEMO)
    request_id: bytes
    reason: str


@check_schema
@dataclass(frozen=True, slots=True)
class Withdraw:
    """Burn `amount` of `asset`; `gateway` pays out off-chain against `payout_reference`."""

    TAG: ClassVar[int] = 6
    SCHEMA: ClassVar = (ADDRESS, ASSET, AMOUNT, MEMO)
    gateway: bytes
    asset: str
    amount: int
    payout_reference: str


GAS = UInt(limits.contract_gas_max)
FUNCTION_NAME = Text(64, ascii_only=True)
CONTRACT_ARGS = Bytes(max_size=limits.contract_args_bytes_max)
VALUE_ASSET = Text(limits.asset_code_chars_max, ascii_only=True)
"""An asset code, or "" when no value is attached."""


@check_schema
@dataclass(frozen=True, slots=True)
class DeployContract:
    """Deploy a contract (sender needs the deployer permission); runs its `init` function if it has one.

    The contract's address is derived from the sender and the transaction's nonce."""

    TAG: ClassVar[int] = 7
    SCHEMA: ClassVar = (Text(limits.contract_source_bytes_max), CONTRACT_ARGS, GAS, VALUE_ASSET, AMOUNT)
    source: str
    init_args: bytes
    """`encoding.encode_value` of a tuple of arguments for `init` (an empty tuple if none)."""
    gas_limit: int
    value_asset: str
    """The asset of `value`; "" when `value` is 0."""
    value: int
    """Minor units of `value_asset` the sender attaches: they move to the new contract's own balance before
    `init` runs (0: nothing attached)."""


@check_schema
@dataclass(frozen=True, slots=True)
class CallContract:
    """Call a public function of a contract with the sender as the caller.

    The contract can move only its own balance, the escrows it holds, the value attached here and what an
    owner approved it to pull (`ApproveSpend`): calling an unknown contract risks the attached value only."""

    TAG: ClassVar[int] = 8
    SCHEMA: ClassVar = (ADDRESS, FUNCTION_NAME, CONTRACT_ARGS, GAS, VALUE_ASSET, AMOUNT)
    contract: bytes
    function: str
    args: bytes
    """`encoding.encode_value` of a tuple of arguments."""
    gas_limit: int
    value_asset: str
    """The asset of `value`; "" when `value` is 0."""
    value: int
    """Minor units of `value_asset` the sender attaches (like the EVM's msg.value): they move to the contract's
    own balance before the function runs, and stay there only if the call succeeds (0: nothing attached)."""


@check_schema
@dataclass(frozen=True, slots=True)
class SetMerchantStatus:
    """A gateway suspends a merchant (it can no longer be paid through orders) or reactivates it."""

    TAG: ClassVar[int] = 9
    SCHEMA: ClassVar = (ADDRESS, Bool(), MEMO)
    merchant: bytes
    active: bool
    reason: str


@check_schema
@dataclass(frozen=True, slots=True)
class ApproveSpend:
    """Let `contract` pull up to `amount` of the sender's `asset` (host function `pull_approved`).

    It replaces any earlier allowance for the same contract and asset; 0 revokes it."""

    TAG: ClassVar[int] = 12
    SCHEMA: ClassVar = (ADDRESS, ASSET, AMOUNT)
    contract: bytes
    asset: str
    amount: int


# --- governance actions (what validator operators vote on; node/governance.py applies them) ---

@check_schema
@dataclass(frozen=True, slots=True)
class SetRiskRules:
    """Replace the chain's risk-control rules."""

    TAG: ClassVar[int] = 1
    SCHEMA: ClassVar = (Struct(RiskRules),)
    rules: RiskRules


@check_schema
@dataclass(frozen=True, slots=True)
class SetBlocked:
    """Put an account on the blocklist, or take it off."""

    TAG: ClassVar[int] = 2
    SCHEMA: ClassVar = (ADDRESS, Bool(), MEMO)
    account: bytes
    blocked: bool
    reason: str


@check_schema
@dataclass(frozen=True, slots=True)
class SetDeployer:
    """Grant or revoke the permission to deploy contracts."""

    TAG: ClassVar[int] = 3
    SCHEMA: ClassVar = (ADDRESS, Bool())
    account: bytes
    granted: bool


@check_schema
@dataclass(frozen=True, slots=True)
class SetMinFee:
    """Change an asset's minimum transaction fee."""

    TAG: ClassVar[int] = 4
    SCHEMA: ClassVar = (ASSET, AMOUNT)
    asset: str
    min_fee: int


@check_schema
@dataclass(frozen=True, slots=True)
class AddValidator:
    """Add a validator (takes effect `limits.validator_change_delay_blocks` after approval)."""

    TAG: ClassVar[int] = 5
    SCHEMA: ClassVar = (Struct(ValidatorInfo),)
    validator: ValidatorInfo


@check_schema
@dataclass(frozen=True, slots=True)
class RemoveValidator:
    """Remove the validator with this public key (takes effect like AddValidator)."""

    TAG: ClassVar[int] = 6
    SCHEMA: ClassVar = (PUBLIC_KEY,)
    public_key: bytes


Action = SetRiskRules | SetBlocked | SetDeployer | SetMinFee | AddValidator | RemoveValidator
ACTION_CLASSES: tuple[type, ...] = (SetRiskRules, SetBlocked, SetDeployer, SetMinFee, AddValidator, RemoveValidator)
ACTION_NAMES: dict[type, str] = {SetRiskRules: "set_risk_rules", SetBlocked: "set_blocked",
                                 SetDeployer: "set_deployer", SetMinFee: "set_min_fee",
                                 AddValidator: "add_validator", RemoveValidator: "remove_validator"}


@check_schema
@dataclass(frozen=True, slots=True)
class GovernancePropose:
    """A validator operator proposes a change; it counts as the proposer's approval. The proposal's id is
    this transaction's hash."""

    TAG: ClassVar[int] = 10
    SCHEMA: ClassVar = (Tagged({cls.TAG: cls for cls in ACTION_CLASSES}), UInt(limits.governance_voting_blocks_max))
    action: Action
    voting_blocks: int
    """Approvals are taken for this many blocks after the proposal's."""


@check_schema
@dataclass(frozen=True, slots=True)
class GovernanceApprove:
    """A validator operator approves a proposal; with 2f+1 approvals it takes effect in this transaction."""

    TAG: ClassVar[int] = 11
    SCHEMA: ClassVar = (HASH,)
    proposal_id: bytes


Body = (Transfer | Register | RechargeRequest | RechargePost | RechargeVoid | Withdraw | DeployContract | CallContract
        | SetMerchantStatus | GovernancePropose | GovernanceApprove | ApproveSpend)
BODY_CLASSES: tuple[type, ...] = (Transfer, Register, RechargeRequest, RechargePost, RechargeVoid, Withdraw,
                                  DeployContract, CallContract, SetMerchantStatus, GovernancePropose,
                                  GovernanceApprove, ApproveSpend)
KIND_NAMES: dict[type, str] = {
    Transfer: "transfer", Register: "register", RechargeRequest: "recharge_request",
    RechargePost: "recharge_post", RechargeVoid: "recharge_void", Withdraw: "withdraw",
    DeployContract: "contract_deploy", CallContract: "contract_call", SetMerchantStatus: "merchant_status",
    GovernancePropose: "governance_propose", GovernanceApprove: "governance_approve",
    ApproveSpend: "contract_approve",
}
assert len({cls.TAG for cls in BODY_CLASSES}) == len(BODY_CLASSES)


@check_schema
@dataclass(frozen=True, slots=True)
class Transaction:
    """What the sender signs."""

    SCHEMA: ClassVar = (CHAIN_ID, PUBLIC_KEY, UInt(limits.nonce_max), ASSET, AMOUNT,
                        Tagged({cls.TAG: cls for cls in BODY_CLASSES}))
    chain_id: str
    """The network this transaction is for; the signature binds it too, with the genesis hash."""
    sender_public_key: bytes
    """The sender's ed25519 public key; the sender's address is derived from it."""
    nonce: int
    """Equal to the sender account's nonce when executed; sequential per account."""
    fee_asset: str
    """Asset the fee is paid in."""
    fee: int
    """Fee in minor units of `fee_asset`, at least the chain's minimum for that asset."""
    body: Body


@check_schema
@dataclass(frozen=True, slots=True)
class SignedTransaction:
    SCHEMA: ClassVar = (Struct(Transaction), SIGNATURE)
    transaction: Transaction
    signature: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded signed transaction together with its bytes, hash and sender address."""

    raw: bytes
    hash: bytes
    signed: SignedTransaction
    sender: bytes

    @property
    def transaction(self) -> Transaction:
        return self.signed.transaction

    @property
    def nonce(self) -> int:
        return self.signed.transaction.nonce


# --- making and opening ------------------------------------------------------------

def sign_transaction(keys: crypto.KeyPair, domain: crypto.SigningDomain, transaction: Transaction) -> bytes:
    """The encoded signed transaction for the network `domain`, ready for `tx_send`."""
    assert transaction.sender_public_key == keys.public_key, "signing key must match sender_public_key"
    assert transaction.chain_id == domain.chain_id, "the transaction names another chain than the signing domain"
    payload = encoding.encode(transaction)
    signature = crypto.sign(keys, domain, crypto.TAG_TRANSACTION, payload)
    return encoding.encode(SignedTransaction(transaction, signature))


def transaction_hash(raw: bytes) -> bytes:
    return crypto.hash_bytes(raw)


# A signed transaction is [transaction, signature]: a 1-byte array header, the
# transaction's encoding, then a 66-byte bin8 field (2 header bytes + 64).
_SIGNATURE_FIELD_BYTES = 2 + crypto.SIGNATURE_BYTES


def open_transaction(raw: bytes, domain: crypto.SigningDomain, verify_signature: bool = True) -> Envelope:
    """Decode and statelessly validate a signed transaction; raises InvalidTransaction."""
    try:
        signed = encoding.decode(SignedTransaction, raw, limits.tx_bytes_max)
    except encoding.DecodeError as error:
        raise InvalidTransaction("malformed", f"malformed transaction: {error}") from error
    transaction = signed.transaction
    large_kinds = (DeployContract, GovernancePropose)
    if len(raw) > limits.payment_tx_bytes_max and not isinstance(transaction.body, large_kinds):
        raise InvalidTransaction("too_large", f"a {kind_name(transaction)} transaction may not exceed "
                                              f"{limits.payment_tx_bytes_max} bytes")
    validate_transaction(transaction, domain.chain_id)
    sender = crypto.address_from_public_key(transaction.sender_public_key)
    envelope = Envelope(raw, transaction_hash(raw), signed, sender)
    if verify_signature and not verify_envelope(envelope, domain):
        raise bad_signature()
    return envelope


def bad_signature() -> InvalidTransaction:
    """The refusal of a transaction whose signature does not verify (here, or in a batch verifier)."""
    return InvalidTransaction("bad_signature", "signature does not verify for the sender's key and this network "
                                               "(chain id and genesis hash)")


def signing_payload(envelope: Envelope) -> bytes:
    """The bytes the sender signed: the canonical encoding of the transaction."""
    # `decode` checked the encoding is canonical, so the transaction's bytes are a slice of `raw`.
    return envelope.raw[1:-_SIGNATURE_FIELD_BYTES]


def verify_envelope(envelope: Envelope, domain: crypto.SigningDomain) -> bool:
    """True if the sender's signature covers this transaction on the network `domain`."""
    return crypto.verify(envelope.transaction.sender_public_key, domain, crypto.TAG_TRANSACTION,
                         signing_payload(envelope), envelope.signed.signature)


def validate_transaction(transaction: Transaction, chain_id: str) -> None:
    """Stateless rules; each failure names the rule."""
    if transaction.chain_id != chain_id:
        raise InvalidTransaction("wrong_chain", f"transaction is for chain {transaction.chain_id!r}, this is {chain_id!r}")
    body = transaction.body
    sender = crypto.address_from_public_key(transaction.sender_public_key)
    if isinstance(body, (Transfer, RechargeRequest, Withdraw)) and body.amount == 0:
        raise InvalidTransaction("zero_amount", "amount must be positive")
    if isinstance(body, Transfer) and body.recipient == sender:
        raise InvalidTransaction("self_transfer", "recipient must differ from the sender")
    if isinstance(body, Register) and body.role not in ROLE_NAMES:
        known = ", ".join(f"{int(role)} ({name})" for role, name in ROLE_NAMES.items())
        raise InvalidTransaction("unknown_role", f"role {body.role} is not one of {known}")
    if isinstance(body, Withdraw) and not body.payout_reference:
        raise InvalidTransaction("missing_reference", "a withdrawal needs a payout reference")
    if isinstance(body, GovernancePropose) and body.voting_blocks == 0:
        raise InvalidTransaction("zero_voting_blocks", "a proposal needs at least one block of voting")
    if isinstance(body, GovernancePropose) and isinstance(body.action, SetRiskRules):
        _validate_risk_rules(body.action.rules)
    if isinstance(body, GovernancePropose) and isinstance(body.action, AddValidator):
        _validate_validator(body.action.validator)
    if isinstance(body, (DeployContract, CallContract)) and body.gas_limit == 0:
        raise InvalidTransaction("zero_gas", "a contract transaction needs a positive gas limit")
    if isinstance(body, (DeployContract, CallContract)) and body.value == 0 and body.value_asset:
        raise InvalidTransaction("value_asset_without_value", "value_asset must be empty when no value is "
                                                              "attached (value 0)")
    if isinstance(body, (DeployContract, CallContract)) and body.value and not body.value_asset:
        raise InvalidTransaction("value_without_asset", "an attached value needs its value_asset")
    if isinstance(body, CallContract) and (body.function.startswith("_") or not body.function.isidentifier()):
        raise InvalidTransaction("bad_function", f"{body.function!r} is not a public function name")


def _validate_risk_rules(rules: RiskRules) -> None:
    seen = set()
    for limit in rules.limits:
        if limit.role not in ROLE_NAMES:
            raise InvalidTransaction("unknown_role", f"risk limit for unknown role {limit.role}")
        if (limit.role, limit.asset) in seen:
            raise InvalidTransaction("duplicate_limit", f"two risk limits for {ROLE_NAMES[Role(limit.role)]} "
                                                        f"{limit.asset}")
        seen.add((limit.role, limit.asset))
    if rules.velocity_payments_max and rules.velocity_window_ms == 0:
        raise InvalidTransaction("zero_window", "a velocity limit needs a window of at least 1 ms")


def _validate_validator(validator: ValidatorInfo) -> None:
    if validator.role not in ROLE_NAMES:
        raise InvalidTransaction("unknown_role", f"validator role {validator.role} is not one of "
                                                 f"{', '.join(ROLE_NAMES.values())}")
    if not validator.name or not validator.p2p_address:
        raise InvalidTransaction("incomplete_validator", "a validator needs a name and a p2p address")
    host, separator, port = validator.p2p_address.rpartition(":")
    if (not separator or not port.isdigit() or not 0 < int(port) <= 65_535 or not host.strip("[]")
            or any(c.isspace() or c == "/" for c in host)):
        # Every node dials it: an address the transport cannot parse would stop them all at the switch.
        raise InvalidTransaction("bad_p2p_address", "a validator added by governance needs a host:port "
                                                    "address")


def attached_value_of(transaction: Transaction) -> tuple[str, int]:
    """(asset, amount) a contract transaction attaches; ("", 0) when none (and for every other kind)."""
    body = transaction.body
    if isinstance(body, (DeployContract, CallContract)):
        return body.value_asset, body.value
    return "", 0


def gas_limit_of(transaction: Transaction) -> int:
    """Gas a transaction reserves (0 for kinds that run no contract code)."""
    body = transaction.body
    return body.gas_limit if isinstance(body, (DeployContract, CallContract)) else 0


def required_fee(transaction: Transaction, min_fee: int) -> int:
    """The least fee a transaction must offer: the asset's minimum plus its gas (one unit per
    `limits.gas_per_fee_unit`, rounded up)."""
    return min_fee + -(-gas_limit_of(transaction) // limits.gas_per_fee_unit)


def kind_name(transaction: Transaction) -> str:
    return KIND_NAMES[type(transaction.body)]
