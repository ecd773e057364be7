"""Ledger state, its commitment (state root) and account proofs.

State is a map from state keys to typed records (accounts, recharge requests,
asset supplies). The committed state lives in memory (`CommittedState`) and is
mirrored in the store; a block's execution works on a `State`, a copy-on-write
overlay over the committed state, so executing never changes what is committed.

Commitment: keys are spread over 2**16 buckets by their hash. A bucket's hash
covers its sorted (key, value-hash) entries; a binary Merkle tree of depth 16
over the bucket hashes gives the state root. Changing k keys rehashes k buckets
and at most 16*k inner nodes, so the root updates in time proportional to the
keys changed (times the bucket occupancy, about entries / 65,536). A proof of
an account is its bucket's entries and 16 sibling hashes; `verify_account_proof`
checks it against a root with nothing but this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator

from node import crypto, encoding, limits
from node.encoding import ADDRESS, AMOUNT, ASSET, HASH, MEMO, U64, Bytes, Seq, Struct, UInt, check_schema

TREE_DEPTH = limits.state_tree_depth
BUCKET_COUNT = 1 << TREE_DEPTH

# State key prefixes (these keys are hashed into the commitment; storage adds its own prefix).
KEY_ACCOUNT = b"\x01"
KEY_RECHARGE = b"\x02"
KEY_SUPPLY = b"\x03"


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

    def with_balance(self, asset: str, amount: int) -> Account:
        assert 0 <= amount <= limits.amount_max, amount
        others = [b for b in self.balances if b.asset != asset]
        if amount:
            others.append(Balance(asset, amount))
        others.sort(key=lambda b: b.asset)
        return Account(self.nonce, self.role, self.kyc_hash, self.registered_by, tuple(others))

    def with_nonce(self, nonce: int) -> Account:
        return Account(nonce, self.role, self.kyc_hash, self.registered_by, self.balances)


NO_ADDRESS = bytes(20)
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


def account_key(address: bytes) -> bytes:
    return KEY_ACCOUNT + address


def recharge_key(request_id: bytes) -> bytes:
    return KEY_RECHARGE + request_id


def supply_key(asset: str) -> bytes:
    return KEY_SUPPLY + asset.encode()


_RECORD_BY_PREFIX: dict[bytes, type] = {KEY_ACCOUNT: Account, KEY_RECHARGE: RechargeRecord, KEY_SUPPLY: Supply}
_RECORD_BYTES_MAX = 4096


def encode_record(record: Any) -> bytes:
    return encoding.encode(record)


def decode_record(key: bytes, data: bytes) -> Any:
    cls = _RECORD_BY_PREFIX.get(key[:1])
    if cls is None:
        raise encoding.DecodeError(f"unknown state key prefix {key[:1]!r}")
    return encoding.decode(cls, data, _RECORD_BYTES_MAX)


# --- commitment ----------------------------------------------------------------------------

def bucket_of(key: bytes) -> int:
    return int.from_bytes(crypto.hash_bytes(key)[:4], "big") >> (32 - TREE_DEPTH)


def value_hash(encoded_value: bytes) -> bytes:
    return crypto.hash_bytes(encoded_value)


def bucket_hash(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Hash of a bucket's (key, value-hash) entries in key order; the empty bucket hashes to zeros."""
    ordered = sorted(entries)
    if not ordered:
        return bytes(32)
    return crypto.hash_bytes(b"bucket" + encoding.pack([list(entry) for entry in ordered]))


def _empty_subtree_hashes() -> list[bytes]:
    """Hash of an empty subtree at each level, level 0 = bucket."""
    hashes = [bytes(32)]
    for _ in range(TREE_DEPTH):
        hashes.append(crypto.hash_pair(hashes[-1], hashes[-1]))
    return hashes


EMPTY_SUBTREE = _empty_subtree_hashes()


class StateTree:
    """The bucketed Merkle tree. Nodes are kept sparse: absent = empty subtree."""

    def __init__(self) -> None:
        self.buckets: dict[int, dict[bytes, bytes]] = {}
        """bucket index -> {state key: value hash}."""
        self.nodes: dict[tuple[int, int], bytes] = {}
        """(level, index) -> hash for non-empty subtrees; level 0 are buckets, TREE_DEPTH the root."""

    @property
    def root(self) -> bytes:
        return self.nodes.get((TREE_DEPTH, 0), EMPTY_SUBTREE[TREE_DEPTH])

    def node(self, level: int, index: int, overlay: dict[tuple[int, int], bytes] | None = None) -> bytes:
        if overlay is not None and (level, index) in overlay:
            return overlay[(level, index)]
        return self.nodes.get((level, index), EMPTY_SUBTREE[level])

    def compute_update(self, changed: dict[bytes, bytes | None]) -> TreeUpdate:
        """Root and node changes for setting keys to encoded values (None = delete), without applying."""
        bucket_changes: dict[int, dict[bytes, bytes | None]] = {}
        for key, encoded in changed.items():
            bucket_changes.setdefault(bucket_of(key), {})[key] = None if encoded is None else value_hash(encoded)
        overlay: dict[tuple[int, int], bytes] = {}
        new_buckets: dict[int, dict[bytes, bytes]] = {}
        for index, changes in bucket_changes.items():
            entries = dict(self.buckets.get(index, {}))
            for key, hashed in changes.items():
                if hashed is None:
                    entries.pop(key, None)
                else:
                    entries[key] = hashed
            new_buckets[index] = entries
            overlay[(0, index)] = bucket_hash(entries.items())
        dirty = set(bucket_changes)
        for level in range(1, TREE_DEPTH + 1):
            parents = {index >> 1 for index in dirty}
            for parent in parents:
                left = self.node(level - 1, parent * 2, overlay)
                right = self.node(level - 1, parent * 2 + 1, overlay)
                overlay[(level, parent)] = crypto.hash_pair(left, right)
            dirty = parents
        root = overlay.get((TREE_DEPTH, 0), self.root)
        return TreeUpdate(root, new_buckets, overlay)

    def apply(self, update: TreeUpdate) -> None:
        for index, entries in update.buckets.items():
            if entries:
                self.buckets[index] = entries
            else:
                self.buckets.pop(index, None)
        for position, hashed in update.nodes.items():
            if hashed == EMPTY_SUBTREE[position[0]]:
                self.nodes.pop(position, None)
            else:
                self.nodes[position] = hashed
        assert self.root == update.root

    def prove(self, key: bytes) -> tuple[int, tuple[tuple[bytes, bytes], ...], tuple[bytes, ...]]:
        index = bucket_of(key)
        entries = tuple(sorted(self.buckets.get(index, {}).items()))
        siblings = tuple(self.node(level, (index >> level) ^ 1) for level in range(TREE_DEPTH))
        return index, entries, siblings


@dataclass(frozen=True, slots=True)
class TreeUpdate:
    root: bytes
    buckets: dict[int, dict[bytes, bytes]]
    nodes: dict[tuple[int, int], bytes]


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
                        Seq(HASH, TREE_DEPTH))
    address: bytes
    account: bytes
    """Encoded Account, or empty if the account does not exist."""
    bucket_entries: tuple[ProofEntry, ...]
    siblings: tuple[bytes, ...]
    """Sibling hashes from the bucket level up to just below the root."""


PROOF_BYTES_MAX = 8 * 1024 * 1024


def verify_account_proof(root: bytes, proof: AccountProof) -> Account | None:
    """The proven account (None if proven absent); raises ValueError if the proof does not check."""
    key = account_key(proof.address)
    index = bucket_of(key)
    if len(proof.siblings) != TREE_DEPTH:
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
    for level, sibling in enumerate(proof.siblings):
        if (index >> level) & 1:
            current = crypto.hash_pair(sibling, current)
        else:
            current = crypto.hash_pair(current, sibling)
    if current != root:
        raise ValueError("proof does not lead to the state root")
    return account


# --- committed state and overlays ----------------------------------------------------------

@dataclass
class CommittedState:
    """The state after the last committed block, in memory, with its Merkle tree."""

    params: Any = None
    """The chain's `genesis.ChainParams` (fixed at genesis)."""
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


class State:
    """A copy-on-write view: the committed state plus this block's changes.

    Reading a State whose base has since committed another block is a bug, and asserted.
    """

    __slots__ = ("base", "base_version", "changes")

    def __init__(self, base: CommittedState, changes: dict[bytes, Any] | None = None) -> None:
        self.base = base
        self.base_version = base.version
        self.changes: dict[bytes, Any] = {} if changes is None else changes

    def get(self, key: bytes) -> Any:
        assert self.base_version == self.base.version, "state view outlived its base"
        if key in self.changes:
            return self.changes[key]
        return self.base.records.get(key)

    def put(self, key: bytes, record: Any) -> None:
        self.changes[key] = record

    def account(self, address: bytes) -> Account:
        return self.get(account_key(address)) or EMPTY_ACCOUNT

    def set_account(self, address: bytes, account: Account) -> None:
        self.put(account_key(address), account)

    def supply(self, asset: str) -> int:
        record = self.get(supply_key(asset))
        return 0 if record is None else record.amount

    def encoded_changes(self) -> dict[bytes, bytes | None]:
        return {key: None if record is None else encode_record(record) for key, record in self.changes.items()}

    def iter_records(self) -> Iterator[tuple[bytes, Any]]:
        """Every record visible in this view (for invariant checks in tests)."""
        for key, record in self.base.records.items():
            if key not in self.changes:
                yield key, record
        for key, record in self.changes.items():
            if record is not None:
                yield key, record
