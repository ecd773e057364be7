"""Ledger state, its commitment (state root) and account proofs.

State is a map from state keys to typed records (accounts, recharge requests,
asset supplies). The committed state lives in memory (`CommittedState`) and is
mirrored in the store; a block's execution works on a `State`, a copy-on-write
overlay over the committed state, so executing never changes what is committed.

Commitment: keys are spread over 2**16 buckets by their hash. A bucket's hash
covers its sorted (key, value-hash) entries; a 16-ary Merkle tree of depth 4
over the bucket hashes gives the state root. Changing k keys rehashes k buckets
and at most 4*k inner nodes, so the root updates in time proportional to the
keys changed (times the bucket occupancy, about entries / 65,536). A proof of
an account is its bucket's entries and 60 sibling hashes; `verify_account_proof`
checks it against a root with nothing but this module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator

from node import crypto, encoding, limits
from node.validators import VALIDATOR_INFO_BYTES_MAX, ValidatorInfo  # noqa: F401 (the state holds validator sets)
from node.encoding import (ADDRESS, AMOUNT, ASSET, HASH, MEMO, PUBLIC_KEY, U64, Bytes, Seq, Struct, Text, UInt,
                           check_schema)

BUCKET_BITS = limits.state_tree_bucket_bits
BUCKET_COUNT = 1 << BUCKET_BITS
ARITY_BITS = 4
ARITY = 1 << ARITY_BITS
TREE_DEPTH = BUCKET_BITS // ARITY_BITS
"""Levels of inner nodes above the buckets."""
SIBLINGS_PER_PROOF = TREE_DEPTH * (ARITY - 1)
assert BUCKET_BITS % ARITY_BITS == 0

# State key prefixes (these keys are hashed into the commitment; storage adds its own prefix).
KEY_ACCOUNT = b"\x01"
KEY_RECHARGE = b"\x02"
KEY_SUPPLY = b"\x03"
KEY_CONTRACT = b"\x04"
KEY_CONTRACT_STORAGE = b"\x05"
KEY_ESCROW = b"\x06"
KEY_DEPLOYER = b"\x07"
KEY_SUSPENSION = b"\x08"
KEY_RISK_RULES = b"\x09"
KEY_BLOCKED = b"\x0a"
KEY_SPENDING = b"\x0b"
KEY_PROPOSAL = b"\x0c"
KEY_MIN_FEE = b"\x0d"
KEY_PROPOSAL_INDEX = b"\x0e"
KEY_VALIDATOR_EPOCHS = b"\x0f"
KEY_ALLOWANCE = b"\x10"


# --- records ---------------------------------------------------------------------------

@check_schema
@dataclass(frozen=True, slots=True)
class Balance:
    SCHEMA: ClassVar = (ASSET, AMOUNT)
    asset: str
    amount: int


@check_schema
@dataclass(frozen=True, slots=True)
class Account:
    """An account: registered by a gateway (role != 0) or merely holding funds."""

    SCHEMA: ClassVar = (UInt(limits.nonce_max), UInt(3), Bytes(max_size=32), ADDRESS,
                        Seq(Struct(Balance), limits.assets_max))
    nonce: int
    """Number of transactions this account has sent; the next one must carry this nonce."""
    role: int
    """`transactions.Role` value, or 0 if never registered."""
    kyc_hash: bytes
    """Hash of the identity data the registering gateway checked (empty if unregistered)."""
    registered_by: bytes
    """Gateway that attested the KYC (20 zero bytes if unregistered or genesis)."""
    balances: tuple[Balance, ...]
    """Non-zero balances, sorted by asset code."""

    def balance_of(self, asset: str) -> int:
        for balance in self.balances:
            if balance.asset == asset:
                return balance.amount
        return 0

    def with_balance(self, asset: str, amount: int, nonce: int | None = None) -> Account:
        """A copy with `asset`'s balance set to `amount` (and the nonce set, if given)."""
        assert 0 <= amount <= limits.amount_max, amount
        balances = self.balances
        for position, balance in enumerate(balances):  # execution's hot path: no sorting when the asset exists
            if balance.asset == asset:
                kept = balances[position + 1:]
                middle = (Balance(asset, amount),) if amount else ()
                balances = balances[:position] + middle + kept
                break
        else:
            if amount:
                balances = tuple(sorted(balances + (Balance(asset, amount),), key=lambda b: b.asset))
        return Account(self.nonce if nonce is None else nonce, self.role, self.kyc_hash, self.registered_by,
                       balances)

    def with_nonce(self, nonce: int) -> Account:
        return Account(nonce, self.role, self.kyc_hash, self.registered_by, self.balances)


NO_ADDRESS = bytes(20)
MERCHANT_ROLE = 2
"""`transactions.Role.MERCHANT` (this module sits below transactions)."""
EMPTY_ACCOUNT = Account(0, 0, b"", NO_ADDRESS, ())

RECHARGE_PENDING = 1
RECHARGE_POSTED = 2
RECHARGE_VOIDED = 3
RECHARGE_STATUS_NAMES = {RECHARGE_PENDING: "pending", RECHARGE_POSTED: "posted", RECHARGE_VOIDED: "voided"}


@check_schema
@dataclass(frozen=True, slots=True)
class RechargeRecord:
    """A user's top-up request and what the gateway did with it."""

    SCHEMA: ClassVar = (ADDRESS, ADDRESS, ASSET, AMOUNT, UInt(3), MEMO, MEMO, U64)
    user: bytes
    gateway: bytes
    asset: str
    amount: int
    status: int
    request_reference: str
    """The user's reference (e.g. the bank transfer memo)."""
    resolution: str
    """The gateway's posting reference or void reason."""
    height: int
    """Height at which the request was made."""


@check_schema
@dataclass(frozen=True, slots=True)
class Supply:
    """Total amount of an asset in existence: genesis + posted recharges - withdrawals."""

    SCHEMA: ClassVar = (AMOUNT,)
    amount: int


@check_schema
@dataclass(frozen=True, slots=True)
class ContractRecord:
    """A deployed contract: its source is on chain, readable by anyone it may charge."""

    SCHEMA: ClassVar = (HASH, Text(limits.contract_source_bytes_max), ADDRESS, U64)
    code_hash: bytes
    source: str
    deployer: bytes
    height: int
    """Height of the block that deployed it."""


@check_schema
@dataclass(frozen=True, slots=True)
class StorageValue:
    """One entry of a contract's storage: `encoding.encode_value` of a contract value."""

    SCHEMA: ClassVar = (Bytes(max_size=limits.contract_value_bytes_max),)
    data: bytes


@check_schema
@dataclass(frozen=True, slots=True)
class EscrowRecord:
    """Funds a contract holds for a payer until it releases or refunds them (outside every account)."""

    SCHEMA: ClassVar = (ADDRESS, ASSET, AMOUNT)
    payer: bytes
    asset: str
    amount: int
    """What is still held (releases reduce it)."""


@check_schema
@dataclass(frozen=True, slots=True)
class Allowance:
    """How much of its owner's asset a contract may still pull (`ApproveSpend`; absent means none)."""

    SCHEMA: ClassVar = (AMOUNT,)
    amount: int
    """What is left: each `pull_approved` lowers it, a new `ApproveSpend` replaces it."""


@check_schema
@dataclass(frozen=True, slots=True)
class DeployerGrant:
    """The account may deploy contracts (from genesis or governance)."""

    SCHEMA: ClassVar = (U64,)
    height: int
    """Height at which it was granted (0: genesis)."""


@check_schema
@dataclass(frozen=True, slots=True)
class Suspension:
    """A merchant a gateway suspended: it cannot take new orders until reactivated."""

    SCHEMA: ClassVar = (ADDRESS, MEMO, U64)
    by: bytes
    reason: str
    height: int


@check_schema
@dataclass(frozen=True, slots=True)
class RiskLimit:
    """Outgoing payment limits for accounts of one role in one asset (0 = no limit)."""

    SCHEMA: ClassVar = (UInt(3), ASSET, AMOUNT, AMOUNT)
    role: int
    asset: str
    per_tx_max: int
    daily_max: int
    """Most an account may pay out per UTC day (by block time)."""


@check_schema
@dataclass(frozen=True, slots=True)
class RiskRules:
    """The chain's risk-control rules (one record; only governance changes it)."""

    SCHEMA: ClassVar = (Seq(Struct(RiskLimit), limits.risk_limits_max), UInt(limits.velocity_payments_max), U64)
    limits: tuple[RiskLimit, ...]
    velocity_payments_max: int
    """Most payments one account may make within `velocity_window_ms` (0 = no limit)."""
    velocity_window_ms: int


NO_RISK_RULES = RiskRules((), 0, 0)


@check_schema
@dataclass(frozen=True, slots=True)
class Blocked:
    """An account on the blocklist: it can neither pay nor be paid."""

    SCHEMA: ClassVar = (MEMO, U64)
    reason: str
    height: int


@check_schema
@dataclass(frozen=True, slots=True)
class Spending:
    """What an account paid out, for the daily and velocity limits."""

    SCHEMA: ClassVar = (U64, Seq(Struct(Balance), limits.assets_max), U64, UInt(limits.velocity_payments_max))
    day: int
    """UTC day (block time // 86,400,000) that `spent` counts."""
    spent: tuple[Balance, ...]
    window_start_ms: int
    window_payments: int




@check_schema
@dataclass(frozen=True, slots=True)
class ValidatorEpoch:
    """The validator set from `from_height` on (until the next epoch)."""

    SCHEMA: ClassVar = (U64, Seq(Struct(ValidatorInfo), limits.validators_max))
    from_height: int
    """First block this set certifies (0: genesis' set)."""
    validators: tuple[ValidatorInfo, ...]
    """In index order: a certificate's signature i is validator i's."""


VALIDATOR_EPOCH_BYTES_MAX = 16 + limits.validators_max * VALIDATOR_INFO_BYTES_MAX
"""Largest encoded ValidatorEpoch (a full set of the largest validators: about 96 KiB)."""


@check_schema
@dataclass(frozen=True, slots=True)
class ValidatorEpochs:
    """The validator sets execution can ask about, oldest first; absent until governance first changes the set.

    The first epoch is the one in force at the last block that changed the set (genesis' set as the epoch
    from 0 until it is replaced), the others are scheduled after that block: at most
    `validator_epochs_in_state_max`, so the record stays small however often the set changes. Older sets are
    not here but in the chain store, which keeps every epoch (`ChainStore.validators_at`).
    """

    SCHEMA: ClassVar = (Seq(Struct(ValidatorEpoch), limits.validator_epochs_in_state_max),)
    epochs: tuple[ValidatorEpoch, ...]


VALIDATOR_EPOCHS_BYTES_MAX = 16 + limits.validator_epochs_in_state_max * VALIDATOR_EPOCH_BYTES_MAX
"""Largest encoded ValidatorEpochs record."""


def epoch_at(epochs: tuple[ValidatorEpoch, ...], height: int) -> ValidatorEpoch:
    """The epoch of `epochs` (oldest first) in force at block `height`: the last one begun by then."""
    begun = [epoch for epoch in epochs if epoch.from_height <= height]
    assert begun, f"height {height} is before the first of these validator epochs"
    return begun[-1]


@check_schema
@dataclass(frozen=True, slots=True)
class MinFee:
    """A minimum fee governance set for an asset (it replaces the genesis value)."""

    SCHEMA: ClassVar = (AMOUNT,)
    amount: int


@check_schema
@dataclass(frozen=True, slots=True)
class ProposalRecord:
    """A governance proposal and the validator operators who approved it."""

    SCHEMA: ClassVar = (Bytes(max_size=limits.governance_action_bytes_max), ADDRESS,
                        Seq(ADDRESS, limits.validators_max), UInt(3), U64, U64)
    action: bytes
    """The encoded `governance.Action`."""
    proposer: bytes
    approvals: tuple[bytes, ...]
    status: int
    """1 open, 2 executed, 3 expired (see node/governance.py)."""
    created_height: int
    expires_height: int
    """Approvals are taken while the chain's height is below this."""


@check_schema
@dataclass(frozen=True, slots=True)
class ProposalIndex:
    """Ids of the most recent proposals, oldest first (for listing)."""

    SCHEMA: ClassVar = (Seq(HASH, limits.governance_proposals_listed_max),)
    ids: tuple[bytes, ...]


def account_key(address: bytes) -> bytes:
    return KEY_ACCOUNT + address


def recharge_key(request_id: bytes) -> bytes:
    return KEY_RECHARGE + request_id


def supply_key(asset: str) -> bytes:
    return KEY_SUPPLY + asset.encode()


def contract_key(address: bytes) -> bytes:
    return KEY_CONTRACT + address


def contract_storage_key(contract: bytes, encoded_key: bytes) -> bytes:
    """`encoded_key` is `encoding.encode_value` of the contract's key."""
    return KEY_CONTRACT_STORAGE + contract + encoded_key


def escrow_key(contract: bytes, encoded_id: bytes) -> bytes:
    return KEY_ESCROW + contract + encoded_id


def allowance_key(owner: bytes, contract: bytes, asset: str) -> bytes:
    assert len(owner) == 20 and len(contract) == 20
    return KEY_ALLOWANCE + owner + contract + asset.encode()


def deployer_key(address: bytes) -> bytes:
    return KEY_DEPLOYER + address


def suspension_key(address: bytes) -> bytes:
    return KEY_SUSPENSION + address


RISK_RULES_KEY = KEY_RISK_RULES


def blocked_key(address: bytes) -> bytes:
    return KEY_BLOCKED + address


def spending_key(address: bytes) -> bytes:
    return KEY_SPENDING + address


def proposal_key(proposal_id: bytes) -> bytes:
    return KEY_PROPOSAL + proposal_id


def min_fee_key(asset: str) -> bytes:
    return KEY_MIN_FEE + asset.encode()


PROPOSAL_INDEX_KEY = KEY_PROPOSAL_INDEX
VALIDATOR_EPOCHS_KEY = KEY_VALIDATOR_EPOCHS


_RECORD_BY_PREFIX: dict[bytes, type] = {
    KEY_ACCOUNT: Account, KEY_RECHARGE: RechargeRecord, KEY_SUPPLY: Supply, KEY_CONTRACT: ContractRecord,
    KEY_CONTRACT_STORAGE: StorageValue, KEY_ESCROW: EscrowRecord, KEY_DEPLOYER: DeployerGrant,
    KEY_SUSPENSION: Suspension, KEY_RISK_RULES: RiskRules, KEY_BLOCKED: Blocked, KEY_SPENDING: Spending,
    KEY_PROPOSAL: ProposalRecord, KEY_MIN_FEE: MinFee, KEY_PROPOSAL_INDEX: ProposalIndex,
    KEY_VALIDATOR_EPOCHS: ValidatorEpochs, KEY_ALLOWANCE: Allowance,
}
_RECORD_BYTES_MAX = limits.contract_source_bytes_max + 1024
_RECORD_BYTES_MAX_BY_PREFIX = {KEY_VALIDATOR_EPOCHS: VALIDATOR_EPOCHS_BYTES_MAX}
"""Records that may be larger than _RECORD_BYTES_MAX (a restart must load whatever execution wrote)."""


def encode_record(record: Any) -> bytes:
    if type(record) is Account:
        # Hot path (every block re-encodes every touched account): the same bytes as
        # encoding.encode(record), built without walking the schema (tested to agree).
        return encoding.pack([record.nonce, record.role, record.kyc_hash, record.registered_by,
                              [[b.asset, b.amount] for b in record.balances]])
    return encoding.encode(record)


def decode_record(key: bytes, data: bytes) -> Any:
    cls = _RECORD_BY_PREFIX.get(key[:1])
    if cls is None:
        raise encoding.DecodeError(f"unknown state key prefix {key[:1]!r}")
    return encoding.decode(cls, data, _RECORD_BYTES_MAX_BY_PREFIX.get(key[:1], _RECORD_BYTES_MAX))


# --- commitment ----------------------------------------------------------------------------

def bucket_of(key: bytes) -> int:
    return int.from_bytes(crypto.hash_bytes(key)[:4], "big") >> (32 - BUCKET_BITS)


def value_hash(encoded_value: bytes) -> bytes:
    return crypto.hash_bytes(encoded_value)


def bucket_hash(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Hash of a bucket's (key, value-hash) entries in key order; the empty bucket hashes to zeros."""
    ordered = sorted(entries)
    if not ordered:
        return bytes(32)
    return crypto.hash_bytes(b"bucket" + encoding.pack([list(entry) for entry in ordered]))


def node_hash(children: list[bytes]) -> bytes:
    """Hash of an inner node from its ARITY child hashes."""
    assert len(children) == ARITY
    return hashlib.blake2b(b"".join(children), digest_size=32, person=b"paychain-node16").digest()


def _empty_subtree_hashes() -> list[bytes]:
    """Hash of an empty subtree at each level, level 0 = bucket, level TREE_DEPTH = root."""
    hashes = [bytes(32)]
    for _ in range(TREE_DEPTH):
        hashes.append(node_hash([hashes[-1]] * ARITY))
    return hashes


EMPTY_SUBTREE = _empty_subtree_hashes()


class StateTree:
    """The bucketed Merkle tree: 2**16 buckets under a 16-ary tree of depth 4.

    Each level is a plain list of hashes (level 0 = buckets, level TREE_DEPTH = [root]);
    an update copies the lists (pointer copies, cheap) and rehashes only dirty paths.
    """

    def __init__(self) -> None:
        self.buckets: dict[int, dict[bytes, bytes]] = {}
        """bucket index -> {state key: value hash}."""
        self.levels: list[list[bytes]] = [[EMPTY_SUBTREE[level]] * (BUCKET_COUNT >> (ARITY_BITS * level))
                                          for level in range(TREE_DEPTH + 1)]

    @property
    def root(self) -> bytes:
        return self.levels[TREE_DEPTH][0]

    def compute_update(self, changed: dict[bytes, bytes | None]) -> TreeUpdate:
        """Root and new levels for setting keys to encoded values (None = delete), without applying."""
        bucket_changes: dict[int, dict[bytes, bytes | None]] = {}
        for key, encoded in changed.items():
            bucket_changes.setdefault(bucket_of(key), {})[key] = None if encoded is None else value_hash(encoded)
        levels = [list(level) for level in self.levels]
        new_buckets: dict[int, dict[bytes, bytes]] = {}
        for index, changes in bucket_changes.items():
            entries = dict(self.buckets.get(index, {}))
            for key, hashed in changes.items():
                if hashed is None:
                    entries.pop(key, None)
                else:
                    entries[key] = hashed
            new_buckets[index] = entries
            levels[0][index] = bucket_hash(entries.items())
        dirty = set(bucket_changes)
        for level in range(1, TREE_DEPTH + 1):
            parents = {index >> ARITY_BITS for index in dirty}
            below, here = levels[level - 1], levels[level]
            for parent in parents:
                first = parent << ARITY_BITS
                here[parent] = node_hash(below[first:first + ARITY])
            dirty = parents
        return TreeUpdate(levels[TREE_DEPTH][0], new_buckets, levels)

    def apply(self, update: TreeUpdate) -> None:
        for index, entries in update.buckets.items():
            if entries:
                self.buckets[index] = entries
            else:
                self.buckets.pop(index, None)
        self.levels = update.levels
        assert self.root == update.root

    def prove(self, key: bytes) -> tuple[int, tuple[tuple[bytes, bytes], ...], tuple[bytes, ...]]:
        """(bucket index, bucket entries, siblings): ARITY-1 sibling hashes per level, bottom up."""
        index = bucket_of(key)
        entries = tuple(sorted(self.buckets.get(index, {}).items()))
        siblings: list[bytes] = []
        for level in range(TREE_DEPTH):
            position = index >> (ARITY_BITS * level)
            first = (position >> ARITY_BITS) << ARITY_BITS
            group = self.levels[level][first:first + ARITY]
            del group[position - first]
            siblings.extend(group)
        return index, entries, tuple(siblings)


@dataclass(frozen=True, slots=True)
class TreeUpdate:
    root: bytes
    buckets: dict[int, dict[bytes, bytes]]
    levels: list[list[bytes]]


@check_schema
@dataclass(frozen=True, slots=True)
class ProofEntry:
    SCHEMA: ClassVar = (Bytes(max_size=64), HASH)
    key: bytes
    value_hash: bytes


@check_schema
@dataclass(frozen=True, slots=True)
class AccountProof:
    """Everything needed to check an account (or its absence) against a state root offline."""

    SCHEMA: ClassVar = (ADDRESS, Bytes(max_size=_RECORD_BYTES_MAX), Seq(Struct(ProofEntry), 1 << 16),
                        Seq(HASH, SIBLINGS_PER_PROOF))
    address: bytes
    account: bytes
    """Encoded Account, or empty if the account does not exist."""
    bucket_entries: tuple[ProofEntry, ...]
    siblings: tuple[bytes, ...]
    """For each level from the buckets up, the ARITY-1 other children of the node on the path."""


PROOF_BYTES_MAX = 8 * 1024 * 1024


def verify_account_proof(root: bytes, proof: AccountProof) -> Account | None:
    """The proven account (None if proven absent); raises ValueError if the proof does not check."""
    key = account_key(proof.address)
    index = bucket_of(key)
    if len(proof.siblings) != SIBLINGS_PER_PROOF:
        raise ValueError("proof has the wrong number of sibling hashes")
    keys = [entry.key for entry in proof.bucket_entries]
    if len(set(keys)) != len(keys) or any(bucket_of(k) != index for k in keys):
        raise ValueError("proof bucket holds a key from another bucket or twice")
    listed = {entry.key: entry.value_hash for entry in proof.bucket_entries}
    if proof.account:
        if listed.get(key) != value_hash(proof.account):
            raise ValueError("account value does not match its bucket entry")
        account = encoding.decode(Account, proof.account, _RECORD_BYTES_MAX)
    else:
        if key in listed:
            raise ValueError("proof claims absence but the bucket lists the account")
        account = None
    current = bucket_hash((entry.key, entry.value_hash) for entry in proof.bucket_entries)
    for level in range(TREE_DEPTH):
        group = list(proof.siblings[level * (ARITY - 1):(level + 1) * (ARITY - 1)])
        group.insert((index >> (ARITY_BITS * level)) & (ARITY - 1), current)
        current = node_hash(group)
    if current != root:
        raise ValueError("proof does not lead to the state root")
    return account


# --- committed state and overlays ----------------------------------------------------------

@dataclass
class CommittedState:
    """The state after the last committed block, in memory, with its Merkle tree."""

    params: Any = None
    """The chain's `genesis.ChainParams` (fixed at genesis)."""
    signing_domain: crypto.SigningDomain | None = None
    """The chain's signing domain (`Genesis.signing_domain`): what transactions and contract messages are
    verified for. None only while genesis itself is built (its hash is not known yet)."""
    records: dict[bytes, Any] = field(default_factory=dict)
    tree: StateTree = field(default_factory=StateTree)
    version: int = 0
    """Bumped on every commit; overlays built on an older version must not be read."""

    @property
    def root(self) -> bytes:
        return self.tree.root

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Fill from (key, encoded value) pairs, e.g. from the store at start-up."""
        changed: dict[bytes, bytes | None] = {}
        for key, encoded in items:
            self.records[key] = decode_record(key, encoded)
            changed[key] = encoded
        self.tree.apply(self.tree.compute_update(changed))
        self.version += 1

    def apply(self, changes: dict[bytes, Any], update: TreeUpdate) -> None:
        self.version += 1   # odd while changing: a view read on another thread (a query) sees it moved
        for key, record in changes.items():
            if record is None:
                self.records.pop(key, None)
            else:
                self.records[key] = record
        self.tree.apply(update)
        self.version += 1

    def prove_account(self, address: bytes) -> AccountProof:
        key = account_key(address)
        _, entries, siblings = self.tree.prove(key)
        record = self.records.get(key)
        return AccountProof(address, b"" if record is None else encode_record(record),
                            tuple(ProofEntry(k, h) for k, h in entries), siblings)


class StaleStateView(Exception):
    """A view was read after its committed state moved on: a bug on the commit path, or a read-only query
    on another thread that overlapped a commit (it is run again on the new state)."""


class State:
    """A copy-on-write view: the committed state plus this block's changes.

    Reading a State whose base has since committed another block raises StaleStateView.
    """

    __slots__ = ("base", "base_version", "changes")

    def __init__(self, base: CommittedState, changes: dict[bytes, Any] | None = None) -> None:
        self.base = base
        self.base_version = base.version
        self.changes: dict[bytes, Any] = {} if changes is None else changes

    def get(self, key: bytes) -> Any:
        if key in self.changes:
            return self.changes[key]
        record = self.base.records.get(key)
        # Checked after the read: a commit marks the version before it changes a record, so a record
        # read here belongs to this view's version if the version is still the same.
        if self.base_version != self.base.version:
            raise StaleStateView("the committed state changed while this view was read")
        return record

    def put(self, key: bytes, record: Any) -> None:
        self.changes[key] = record

    def account(self, address: bytes) -> Account:
        return self.get(account_key(address)) or EMPTY_ACCOUNT

    def set_account(self, address: bytes, account: Account) -> None:
        self.put(account_key(address), account)

    def is_active_merchant(self, address: bytes) -> bool:
        """A registered merchant that no gateway has suspended."""
        return self.account(address).role == MERCHANT_ROLE and self.get(suspension_key(address)) is None

    def min_fee(self, asset: str) -> int | None:
        """The asset's current minimum fee (governance's, else genesis'); None for an unknown asset."""
        params = self.base.params.asset(asset)
        if params is None:
            return None
        override = self.get(min_fee_key(asset))
        return params.min_fee if override is None else override.amount

    def validators_at(self, height: int) -> tuple[ValidatorInfo, ...]:
        """The validator set that certifies block `height`, for heights from the last block that changed the
        set on (what execution asks about); the set of any older height is `ChainStore.validators_at`'s."""
        record = self.get(VALIDATOR_EPOCHS_KEY)
        if record is None:
            return self.base.params.validators
        return epoch_at(record.epochs, height).validators

    def supply(self, asset: str) -> int:
        record = self.get(supply_key(asset))
        return 0 if record is None else record.amount

    def encoded_changes(self) -> dict[bytes, bytes | None]:
        return {key: None if record is None else encode_record(record) for key, record in self.changes.items()}

    def escrowed(self) -> dict[str, int]:
        """Total held in escrow per asset (for invariant checks: balances + escrow = supply)."""
        totals: dict[str, int] = {}
        for key, record in self.iter_records():
            if key.startswith(KEY_ESCROW):
                totals[record.asset] = totals.get(record.asset, 0) + record.amount
        return totals

    def iter_records(self) -> Iterator[tuple[bytes, Any]]:
        """Every record visible in this view (for invariant checks in tests)."""
        for key, record in self.base.records.items():
            if key not in self.changes:
                yield key, record
        for key, record in self.changes.items():
            if record is not None:
                yield key, record


class Overlay(State):
    """Changes on top of another view, kept apart until `merge()`: a contract call writes here, so
    a call that fails leaves nothing behind."""

    __slots__ = ("parent",)

    def __init__(self, parent: State) -> None:
        super().__init__(parent.base)
        self.parent = parent

    def get(self, key: bytes) -> Any:
        if key in self.changes:
            return self.changes[key]
        return self.parent.get(key)

    def merge(self) -> None:
        """Apply these changes to the parent view."""
        self.parent.changes.update(self.changes)
        self.changes = {}

    def iter_records(self) -> Iterator[tuple[bytes, Any]]:
        raise NotImplementedError("an overlay is for execution, not for scanning")
