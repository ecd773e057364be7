"""What a contract can reach on the chain: the VM's host functions, over an execution overlay.

A call runs against an `Overlay` of the block's state, so when it fails (revert, out of gas,
a broken rule) nothing it wrote survives; the caller merges the overlay only on success.
Money moves only through these functions, and every rule they enforce raises a VM error
naming it. A contract moves only what is its own: its balance (which includes the value
attached to the current call, moved there before the contract runs), the escrows it holds,
and what an owner approved it to pull (`ApproveSpend`, up to the allowance). Nothing else
reads another account's funds for spending or debits them, so calling an unknown contract
risks the attached value and the approved allowances, nothing more.

Storage and events are priced per byte, charged before the write (see `charge`): state is
kept by every validator for good.

Host functions (arguments and results are contract values; addresses are 20-byte `bytes`):

| function | result |
|---|---|
| storage_get(key) / storage_put(key, value) / storage_delete(key) | value or None / None / None |
| type_of(value) | "none", "bool", "int", "str", "bytes", "list", "tuple" or "dict" |
| caller() / contract_address() / fee_account() | address |
| block_height() / block_time() | int (time in ms, the block's timestamp) |
| account_role(address) | 0 unregistered, 1 user, 2 merchant, 3 gateway |
| merchant_active(address) | True for a registered merchant no gateway has suspended |
| hash_value(value) | 32-byte hash of the value's canonical encoding (for deterministic ids) |
| address_of(public_key) | the account address of a 32-byte ed25519 public key |
| verify_signed(public_key, value, signature) | True if `public_key` signed the value's canonical encoding for this chain (tag TAG_CONTRACT_MESSAGE) |
| balance_of(address, asset) | int |
| attached_value() / attached_asset() | int / str the call carries (0 / "" if none), already in the contract's balance |
| allowance(owner, asset) | int: what `owner` still allows this contract to pull |
| pull_approved(owner, asset, amount) | None: `amount` from `owner` to the contract, within the allowance (lowered) |
| transfer(to, asset, amount) | None: pays from the contract's own balance |
| escrow_hold(escrow_id, asset, amount) | None: the contract's own funds into escrow, payer the caller (again: top-up) |
| escrow_release(escrow_id, to, amount) | None: pays part or all of an escrow to `to` |
| escrow_refund(escrow_id) | int: returns what is left to the payer |
| escrow_get(escrow_id) | {"payer", "asset", "amount"} or None |
| emit(name, data) | None: an event in the receipt |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from node import crypto, encoding, limits, risk
from node.blocks import NATIVE_EVENTS, Event
from node.contracts.gas import HostUnavailable, Meter, charge
from node.contracts.vm import Value, VMFault
from node.state import (Allowance, EscrowRecord, Overlay, StaleStateView, StorageValue, allowance_key,
                        contract_storage_key, escrow_key)

HOST_GAS: Mapping[str, int] = {
    "storage_get": 200, "storage_put": 500, "storage_delete": 200,
    "type_of": 2, "caller": 2, "contract_address": 2, "fee_account": 2, "block_height": 2, "block_time": 2,
    "attached_value": 2, "attached_asset": 2,
    "account_role": 100, "merchant_active": 100, "balance_of": 100, "hash_value": 100,
    "address_of": 50, "verify_signed": 3_000, "allowance": 200,
    "transfer": 800, "escrow_hold": 800, "escrow_release": 800, "escrow_refund": 800, "escrow_get": 200,
    "pull_approved": 800, "emit": 100,
}
"""Base gas of each host function; the VM adds gas for the size of arguments and results, and storage_put and
emit add their per-byte gas (below)."""
STORAGE_GAS_PER_BYTE = 16
"""storage_put pays this per byte written (the encoded key plus the encoded value), before it writes: every
validator keeps contract state in memory and on disk for good (docs/CONTRACTS.md, "Storage pricing")."""
EVENT_GAS_PER_BYTE = 8
"""emit pays this per byte of the event's name and encoded data, before it emits: receipts stay on every
validator's disk, but outside the state (never in memory, never read by execution)."""
WRITES = frozenset({"storage_put", "storage_delete", "transfer", "escrow_hold", "escrow_release", "escrow_refund",
                    "pull_approved", "emit"})
"""Host functions a read-only query may not call."""


@dataclass(frozen=True, slots=True)
class AttachedValue:
    """What a transaction attaches to a contract call or deploy (the EVM's msg.value)."""

    asset: str
    """"" when `amount` is 0."""
    amount: int
    """Minor units; they move from the caller to the contract before the contract runs."""


NO_VALUE = AttachedValue("", 0)


_TYPE_NAMES = {type(None): "none", bool: "bool", int: "int", str: "str", bytes: "bytes", list: "list", tuple: "tuple",
               dict: "dict"}


def _require(condition: bool, code: str, message: str) -> None:
    if not condition:
        raise VMFault(code, message)


def _address(value: Value, what: str) -> bytes:
    _require(type(value) is bytes and len(value) == 20, "bad_argument", f"{what} must be a 20-byte address")
    return value


def _amount(value: Value, what: str) -> int:
    _require(type(value) is int and 0 < value <= limits.amount_max, "bad_argument",
             f"{what} must be a positive amount up to {limits.amount_max}")
    return value


class ChainHost:
    """The `Host` of one contract call (see node/contracts/vm.py)."""

    def __init__(self, state: Overlay, contract: bytes, caller: bytes, height: int, time_ms: int,
                 read_only: bool = False, value: AttachedValue = NO_VALUE) -> None:
        self.state = state
        self.contract = contract
        self.caller = caller
        self.height = height
        self.time_ms = time_ms
        self.read_only = read_only
        self.value = value
        self.meter: Meter | None = None
        """The running call's gas (the VM binds it when the call starts); `charge` takes from it."""
        self.events: list[Event] = []
        self._emitted = 0

    def host_functions(self) -> Mapping[str, int]:
        return HOST_GAS

    def call_host(self, name: str, args: tuple[Value, ...]) -> Value:
        _require(not (self.read_only and name in WRITES), "read_only", f"{name} is not allowed in a read-only query")
        handler = getattr(self, "_host_" + name)
        expected = handler.__code__.co_argcount - 1
        _require(len(args) == expected, "bad_argument", f"{name} takes {expected} argument(s), got {len(args)}")
        try:
            return handler(*args)
        except StaleStateView as stale:   # a query overlapped a commit: run it again, it is not the contract's fault
            raise HostUnavailable(str(stale)) from None

    def bind_meter(self, meter: Meter) -> None:
        """Called by the VM when the call starts: the gas `charge` takes from."""
        self.meter = meter

    def charge(self, gas: int) -> None:
        """Take `gas` for the host's own work beyond its base gas (bytes stored, bytes of events), before the work."""
        assert self.meter is not None, "host functions run only inside a VM call, which binds its meter"
        charge(self.meter, gas)

    def receive_attached_value(self) -> None:
        """Move the attached value from the caller to the contract (before the contract runs): a payment by the
        caller, under the risk rules."""
        if self.value.amount:
            self._take(self.caller, "the caller", self.value.asset, self.value.amount)

    # --- storage ---------------------------------------------------------------------------

    def _storage_key(self, key: Value) -> bytes:
        encoded = _encode(key, limits.contract_storage_key_bytes_max, "storage key")
        return contract_storage_key(self.contract, encoded)

    def _host_storage_get(self, key: Value) -> Value:
        record = self.state.get(self._storage_key(key))
        return None if record is None else encoding.decode_value(record.data, limits.contract_value_bytes_max)

    def _host_storage_put(self, key: Value, value: Value) -> None:
        _require(value is not None, "bad_argument", "storage_put of None: use storage_delete")
        encoded_key = _encode(key, limits.contract_storage_key_bytes_max, "storage key")
        encoded_value = _encode(value, limits.contract_value_bytes_max, "storage value")
        self.charge(STORAGE_GAS_PER_BYTE * (len(encoded_key) + len(encoded_value)))
        self.state.put(contract_storage_key(self.contract, encoded_key), StorageValue(encoded_value))

    def _host_storage_delete(self, key: Value) -> None:
        self.state.put(self._storage_key(key), None)

    # --- context ---------------------------------------------------------------------------

    def _host_type_of(self, value: Value) -> str:
        return _TYPE_NAMES[type(value)]

    def _host_caller(self) -> bytes:
        return self.caller

    def _host_contract_address(self) -> bytes:
        return self.contract

    def _host_fee_account(self) -> bytes:
        return self.state.base.params.fee_account

    def _host_block_height(self) -> int:
        return self.height

    def _host_block_time(self) -> int:
        return self.time_ms

    def _host_attached_value(self) -> int:
        return self.value.amount

    def _host_attached_asset(self) -> str:
        return self.value.asset

    def _host_account_role(self, address: Value) -> int:
        return self.state.account(_address(address, "address")).role

    def _host_merchant_active(self, address: Value) -> bool:
        return self.state.is_active_merchant(_address(address, "address"))

    def _host_hash_value(self, value: Value) -> bytes:
        return crypto.hash_bytes(_encode(value, limits.contract_value_bytes_max, "hashed value"))

    def _host_address_of(self, public_key: Value) -> bytes:
        _require(type(public_key) is bytes and len(public_key) == 32, "bad_argument", "a public key is 32 bytes")
        return crypto.address_from_public_key(public_key)

    def _host_verify_signed(self, public_key: Value, value: Value, signature: Value) -> bool:
        _require(type(public_key) is bytes and len(public_key) == 32, "bad_argument", "a public key is 32 bytes")
        _require(type(signature) is bytes and len(signature) == 64, "bad_argument", "a signature is 64 bytes")
        payload = _encode(value, limits.contract_value_bytes_max, "signed value")
        domain = self.state.base.signing_domain
        if domain is None:
            return False  # a genesis contract's init: the chain, and so what a signature is for, does not exist yet
        return crypto.verify(public_key, domain, crypto.TAG_CONTRACT_MESSAGE, payload, signature)

    def _host_balance_of(self, address: Value, asset: Value) -> int:
        return self.state.account(_address(address, "address")).balance_of(self._asset(asset))

    # --- money -----------------------------------------------------------------------------

    def _host_transfer(self, to: Value, asset: Value, amount: Value) -> None:
        to = _address(to, "to")
        self._require_not_blocked(to)
        self._move(self.contract, to, self._asset(asset), _amount(amount, "amount"))

    def _host_escrow_hold(self, escrow_id: Value, asset: Value, amount: Value) -> None:
        key = self._escrow_key(escrow_id)
        asset, amount = self._asset(asset), _amount(amount, "amount")
        existing = self.state.get(key)
        _require(existing is None or (existing.payer == self.caller and existing.asset == asset), "escrow_exists",
                 "an escrow with this id already holds another payer's or asset's funds")
        held = 0 if existing is None else existing.amount
        _require(held + amount <= limits.amount_max, "balance_overflow", "the escrow would exceed the maximum amount")
        own = self.state.account(self.contract)
        _require(own.balance_of(asset) >= amount, "insufficient_funds",
                 f"the contract's balance {own.balance_of(asset)} {asset} is less than {amount}: a contract holds in "
                 "escrow only its own funds (the caller attaches value to the call)")
        # The caller's payment was checked under the risk rules when it attached the value.
        self.state.set_account(self.contract, own.with_balance(asset, own.balance_of(asset) - amount))
        self.state.put(key, EscrowRecord(self.caller, asset, held + amount))
        self._event("escrow_held", (self.caller, self.contract, asset.encode(), _u64(amount)))

    def _host_escrow_release(self, escrow_id: Value, to: Value, amount: Value) -> None:
        key = self._escrow_key(escrow_id)
        record = self._escrow(key)
        to, amount = _address(to, "to"), _amount(amount, "amount")
        _require(amount <= record.amount, "escrow_insufficient",
                 f"the escrow holds {record.amount} {record.asset}, less than {amount}")
        if to != record.payer:  # giving a payer its own money back is never blocked
            self._require_not_blocked(to)
        self._credit(to, record.asset, amount)
        left = record.amount - amount
        self.state.put(key, EscrowRecord(record.payer, record.asset, left) if left else None)
        self._event("escrow_released", (self.contract, to, record.asset.encode(), _u64(amount)))

    def _host_escrow_refund(self, escrow_id: Value) -> int:
        key = self._escrow_key(escrow_id)
        record = self._escrow(key)
        self._credit(record.payer, record.asset, record.amount)
        self.state.put(key, None)
        self._event("escrow_refunded", (self.contract, record.payer, record.asset.encode(), _u64(record.amount)))
        return record.amount

    def _host_escrow_get(self, escrow_id: Value) -> Value:
        record = self.state.get(self._escrow_key(escrow_id))
        if record is None:
            return None
        return {"payer": record.payer, "asset": record.asset, "amount": record.amount}

    # --- approvals -----------------------------------------------------------------------

    def _host_allowance(self, owner: Value, asset: Value) -> int:
        record = self.state.get(allowance_key(_address(owner, "owner"), self.contract, self._asset(asset)))
        return 0 if record is None else record.amount

    def _host_pull_approved(self, owner: Value, asset: Value, amount: Value) -> None:
        owner, asset, amount = _address(owner, "owner"), self._asset(asset), _amount(amount, "amount")
        key = allowance_key(owner, self.contract, asset)
        record = self.state.get(key)
        allowed = 0 if record is None else record.amount
        _require(amount <= allowed, "allowance_exceeded",
                 f"the owner allows this contract {allowed} {asset} (ApproveSpend), less than {amount}")
        self._take(owner, "the owner", asset, amount)
        self.state.put(key, Allowance(allowed - amount) if allowed > amount else None)

    def _take(self, payer: bytes, who: str, asset: str, amount: int) -> None:
        """Move `amount` from `payer` to the contract: a payment by `payer` under the risk rules."""
        account = self.state.account(payer)
        _require(account.balance_of(asset) >= amount, "insufficient_funds",
                 f"{who}'s balance {account.balance_of(asset)} {asset} is less than {amount}")
        own = self.state.account(self.contract)
        _require(own.balance_of(asset) + amount <= limits.amount_max, "balance_overflow",
                 f"the contract's {asset} balance would exceed the maximum")
        try:
            risk.check_payment(self.state, payer, self.contract, asset, amount, self.time_ms)
        except risk.RiskViolation as violation:
            raise VMFault(violation.code, violation.message) from violation
        risk.record_payment(self.state, payer, asset, amount, self.time_ms)
        self.state.set_account(payer, account.with_balance(asset, account.balance_of(asset) - amount))
        self._credit(self.contract, asset, amount)
        self._event("transfer", (payer, self.contract, asset.encode(), _u64(amount)))

    def _require_not_blocked(self, recipient: bytes) -> None:
        try:
            risk.check_not_blocked(self.state, recipient, "the recipient")
        except risk.RiskViolation as violation:
            raise VMFault(violation.code, violation.message) from violation

    def _escrow_key(self, escrow_id: Value) -> bytes:
        return escrow_key(self.contract, _encode(escrow_id, limits.contract_storage_key_bytes_max, "escrow id"))

    def _escrow(self, key: bytes) -> EscrowRecord:
        record = self.state.get(key)
        _require(record is not None, "unknown_escrow", "no escrow with this id (released or refunded already?)")
        return record

    def _asset(self, asset: Value) -> str:
        _require(type(asset) is str and self.state.base.params.asset(asset) is not None, "bad_argument",
                 f"asset {asset!r} is not defined in genesis")
        return asset

    def _move(self, source: bytes, target: bytes, asset: str, amount: int) -> None:
        account = self.state.account(source)
        _require(account.balance_of(asset) >= amount, "insufficient_funds",
                 f"the contract's balance {account.balance_of(asset)} {asset} is less than {amount}")
        self.state.set_account(source, account.with_balance(asset, account.balance_of(asset) - amount))
        self._credit(target, asset, amount)
        self._event("transfer", (source, target, asset.encode(), _u64(amount)))

    def _credit(self, target: bytes, asset: str, amount: int) -> None:
        account = self.state.account(target)
        _require(account.balance_of(asset) + amount <= limits.amount_max, "balance_overflow",
                 f"the recipient's {asset} balance would exceed the maximum")
        self.state.set_account(target, account.with_balance(asset, account.balance_of(asset) + amount))

    # --- events ----------------------------------------------------------------------------

    def _host_emit(self, name: Value, data: Value) -> None:
        _require(type(name) is str and 0 < len(name) <= 32 and name.isascii() and name.isidentifier(),
                 "bad_argument", "an event name is an identifier of 1..32 ASCII characters")
        _require(name not in NATIVE_EVENTS, "reserved_event_name", f"{name!r} is an event of the ledger itself")
        _require(self._emitted < limits.contract_events_max, "too_many_events",
                 f"a call may emit at most {limits.contract_events_max} events")
        encoded = _encode(data, limits.event_field_bytes_max, "event data")
        self.charge(EVENT_GAS_PER_BYTE * (len(name) + len(encoded)))
        self._emitted += 1
        self._event(name, (self.contract, encoded))

    def _event(self, name: str, fields: tuple[bytes, ...]) -> None:
        _require(len(self.events) < limits.receipt_events_max, "too_many_events",
                 f"a call may produce at most {limits.receipt_events_max} events and transfers")
        self.events.append(Event(name, fields))


def _encode(value: Any, max_bytes: int, what: str) -> bytes:
    encoded = encoding.encode_value(value)
    _require(len(encoded) <= max_bytes, "value_too_large", f"{what} is {len(encoded)} bytes encoded, more than "
                                                           f"{max_bytes}")
    return encoded


def _u64(value: int) -> bytes:
    return encoding.encode_uint_be(value, 8)
