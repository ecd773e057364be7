"""Deploy, call and query: from a transaction (or an RPC query) to a VM run with gas, an overlay and events.

Gas is charged in one budget per transaction: a fixed part for deploying (per byte of source)
or calling (per byte of arguments, and for moving an attached value), then whatever the VM and
the host functions use. The attached value moves from the caller to the contract inside the
call's overlay before the contract runs. A run that fails for any contract reason raises
`ContractFailed` with the gas it used; its state changes, the attached value's move included,
stay in the discarded overlay.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from node import crypto, encoding, limits
from node.blocks import Event
from node.contracts.host import NO_VALUE, AttachedValue, ChainHost
from node.contracts.vm import ContractError, Program, Value, call_function, load_program
from node.state import ContractRecord, Overlay, State, contract_key, deployer_key

DEPLOY_GAS_BASE = 20_000
DEPLOY_GAS_PER_SOURCE_BYTE = 16
"""Deploying costs this per byte of source (it is parsed and checked, and stored on every node)."""
CALL_GAS_BASE = 500
ARGS_GAS_PER_BYTE = 2
ATTACHED_VALUE_GAS = 800
"""Moving an attached value (as much as the host's `transfer`)."""


class ContractFailed(Exception):
    """A deploy, call or query failed for a contract reason; `code` is stable, nothing was changed."""

    def __init__(self, code: str, message: str, gas_used: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.gas_used = gas_used


@dataclass(frozen=True, slots=True)
class Outcome:
    value: Value
    gas_used: int
    events: tuple[Event, ...]


class ProgramCache:
    """Loaded contracts by code hash, least recently used first out, bounded by their estimated memory
    (`Program.size_bytes`): loading is deterministic, so the cache changes only speed, never a result.
    Block execution and query threads share it."""

    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max
        self._programs: OrderedDict[bytes, Program] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, record: ContractRecord) -> Program:
        with self._lock:
            program = self._programs.get(record.code_hash)
            if program is not None:
                self._programs.move_to_end(record.code_hash)
                return program
        program = load_program(record.source)  # it loaded when deployed, so it loads again
        with self._lock:
            if record.code_hash not in self._programs:
                self._programs[record.code_hash] = program
                self._bytes += program.size_bytes
            while self._bytes > self.bytes_max and len(self._programs) > 1:
                _, evicted = self._programs.popitem(last=False)
                self._bytes -= evicted.size_bytes
        return program

    def __contains__(self, code_hash: bytes) -> bool:
        return code_hash in self._programs

    def held_bytes(self) -> int:
        return self._bytes


_programs = ProgramCache(limits.programs_cached_bytes_max)


def program_of(record: ContractRecord) -> Program:
    """The parsed contract (cached by code hash)."""
    return _programs.get(record)


def is_loaded(code_hash: bytes) -> bool:
    """True if the contract with this code hash is parsed and in memory."""
    return code_hash in _programs


def decode_args(data: bytes) -> tuple[Value, ...]:
    try:
        args = encoding.decode_value(data, limits.contract_args_bytes_max)
    except encoding.DecodeError as error:
        raise ContractFailed("bad_args", f"arguments are not an encoded contract value: {error}", 0) from error
    if type(args) is not tuple:
        raise ContractFailed("bad_args", "arguments must be encoded as a tuple", 0)
    return args


def deploy(state: State, deployer: bytes, nonce: int, source: str, init_args: bytes, gas_limit: int,
           height: int, time_ms: int, system: bool = False, value: AttachedValue = NO_VALUE) -> tuple[bytes, Outcome]:
    """Deploy a contract from `deployer`; returns its address and the outcome of `init` (if any).

    `system`: a genesis contract, deployed by no account (no permission needed). `value` moves from the deployer
    to the new contract before `init` runs (even when it has no `init`)."""
    fixed = DEPLOY_GAS_BASE + DEPLOY_GAS_PER_SOURCE_BYTE * len(source.encode()) + _value_gas(value)
    if not system and state.get(deployer_key(deployer)) is None:
        raise ContractFailed("not_deployer", "the sender does not have the deployer permission", 0)
    if fixed > gas_limit:
        raise ContractFailed("out_of_gas", f"deploying this source needs at least {fixed} gas", gas_limit)
    try:
        program = load_program(source)
    except ContractError as error:
        raise ContractFailed(error.code, error.message, fixed) from error
    fixed += program.load_gas   # bounded by the source cap, so loading before charging it is bounded too
    if fixed > gas_limit:
        raise ContractFailed("out_of_gas", f"loading this source needs {fixed} gas", gas_limit)
    address = crypto.contract_address(deployer, nonce)
    if state.get(contract_key(address)) is not None:
        raise ContractFailed("contract_exists", "a contract already lives at this address", fixed)
    args = decode_args(init_args)
    if "init" not in program.functions and args:
        raise ContractFailed("bad_args", "the contract has no init function to take arguments", fixed)
    overlay = Overlay(state)
    overlay.put(contract_key(address), ContractRecord(program.code_hash, source, deployer, height))
    host = ChainHost(overlay, address, deployer, height, time_ms, value=value)
    result, gas_used, events = _run(host, program, "init" if "init" in program.functions else None, args,
                                    gas_limit, fixed)
    overlay.merge()
    return address, Outcome(result, gas_used, (Event("contract_deployed", (address, deployer)),) + events)


def call(state: State, caller: bytes, contract: bytes, function: str, args_data: bytes, gas_limit: int,
         height: int, time_ms: int, read_only: bool = False, value: AttachedValue = NO_VALUE,
         deadline_ns: int | None = None) -> Outcome:
    """Call `function` of `contract` with `value` attached; on success its changes are merged into `state` (never
    when read-only: a query attaches nothing). `deadline_ns` (time.monotonic_ns): for queries only."""
    assert deadline_ns is None or read_only, "a transaction's result never depends on time"
    assert not (read_only and value.amount), "a read-only query attaches no value"
    fixed = CALL_GAS_BASE + ARGS_GAS_PER_BYTE * len(args_data) + _value_gas(value)
    if fixed > gas_limit:
        raise ContractFailed("out_of_gas", f"this call needs at least {fixed} gas", gas_limit)
    record = state.get(contract_key(contract))
    if record is None:
        raise ContractFailed("unknown_contract", "no contract at this address", fixed)
    program = program_of(record)
    if function.startswith("_") or function not in program.functions:
        raise ContractFailed("unknown_function", f"the contract has no public function {function!r}", fixed)
    if function == "init":
        raise ContractFailed("init_only_at_deploy", "init runs once, when the contract is deployed", fixed)
    args = decode_args(args_data)
    overlay = Overlay(state)
    host = ChainHost(overlay, contract, caller, height, time_ms, read_only=read_only, value=value)
    result, gas_used, events = _run(host, program, function, args, gas_limit, fixed, deadline_ns)
    if not read_only:
        overlay.merge()
    return Outcome(result, gas_used, events)


def _value_gas(value: AttachedValue) -> int:
    return ATTACHED_VALUE_GAS if value.amount else 0


def _run(host: ChainHost, program: Program, function: str | None, args: tuple[Value, ...], gas_limit: int,
         fixed: int, deadline_ns: int | None = None) -> tuple[Value, int, tuple[Event, ...]]:
    """Move the attached value, then run `function` (None: nothing to run); (result, gas used, events).

    The gas used is the fixed part and the VM's, which includes what the host charged for bytes stored
    and emitted (it takes that from the run's meter)."""
    result = None
    vm_gas_used = 0
    try:
        host.receive_attached_value()
        if function is not None:
            outcome = call_function(program, function, args, host, gas_limit - fixed, deadline_ns)
            result, vm_gas_used = outcome.value, outcome.gas_used
    except ContractError as error:
        raise ContractFailed(error.code, error.message, fixed + error.gas_used) from error
    return result, fixed + vm_gas_used, tuple(host.events)
