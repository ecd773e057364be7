"""Deploy, call and query: from a transaction (or an RPC query) to a VM run with gas, an overlay and events.

Gas is charged in one budget per transaction: a fixed part for deploying (per byte of source)
or calling (per byte of arguments), then whatever the VM and the host functions use. A run
that fails for any contract reason raises `ContractFailed` with the gas it used; its state
changes stay in the discarded overlay.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from node import crypto, encoding, limits
from node.blocks import Event
from node.contracts.host import ChainHost
from node.contracts.vm import ContractError, Program, Value, call_function, load_program
from node.state import ContractRecord, Overlay, State, contract_key, deployer_key

DEPLOY_GAS_BASE = 20_000
DEPLOY_GAS_PER_SOURCE_BYTE = 16
"""Deploying costs this per byte of source (it is parsed and checked, and stored on every node)."""
CALL_GAS_BASE = 500
ARGS_GAS_PER_BYTE = 2
programs_cached_max = 256
"""Parsed contracts kept in memory (by code hash); parsing is deterministic, so this is only speed."""


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


_programs: OrderedDict[bytes, Program] = OrderedDict()


def program_of(record: ContractRecord) -> Program:
    """The parsed contract (cached by code hash)."""
    program = _programs.get(record.code_hash)
    if program is None:
        program = load_program(record.source)  # it loaded when deployed, so it loads again
        _programs[record.code_hash] = program
        if len(_programs) > programs_cached_max:
            _programs.popitem(last=False)
    else:
        _programs.move_to_end(record.code_hash)
    return program


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
           height: int, time_ms: int, system: bool = False) -> tuple[bytes, Outcome]:
    """Deploy a contract from `deployer`; returns its address and the outcome of `init` (if any).

    `system`: a genesis contract, deployed by no account (no permission needed)."""
    fixed = DEPLOY_GAS_BASE + DEPLOY_GAS_PER_SOURCE_BYTE * len(source.encode())
    if not system and state.get(deployer_key(deployer)) is None:
        raise ContractFailed("not_deployer", "the sender does not have the deployer permission", 0)
    if fixed > gas_limit:
        raise ContractFailed("out_of_gas", f"deploying this source needs at least {fixed} gas", gas_limit)
    try:
        program = load_program(source)
    except ContractError as error:
        raise ContractFailed(error.code, error.message, fixed) from error
    address = crypto.contract_address(deployer, nonce)
    if state.get(contract_key(address)) is not None:
        raise ContractFailed("contract_exists", "a contract already lives at this address", fixed)
    args = decode_args(init_args)
    overlay = Overlay(state)
    overlay.put(contract_key(address), ContractRecord(program.code_hash, source, deployer, height))
    value, gas_used, events = None, fixed, ()
    if "init" in program.functions:
        value, gas_used, events = _run(overlay, program, address, deployer, "init", args, gas_limit, fixed,
                                       height, time_ms, read_only=False)
    elif args:
        raise ContractFailed("bad_args", "the contract has no init function to take arguments", fixed)
    overlay.merge()
    return address, Outcome(value, gas_used, (Event("contract_deployed", (address, deployer)),) + events)


def call(state: State, caller: bytes, contract: bytes, function: str, args_data: bytes, gas_limit: int,
         height: int, time_ms: int, read_only: bool = False) -> Outcome:
    """Call `function` of `contract`; on success its changes are merged into `state` (never when read-only)."""
    fixed = CALL_GAS_BASE + ARGS_GAS_PER_BYTE * len(args_data)
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
    value, gas_used, events = _run(overlay, program, contract, caller, function, args, gas_limit, fixed, height,
                                   time_ms, read_only)
    if not read_only:
        overlay.merge()
    return Outcome(value, gas_used, events)


def _run(overlay: Overlay, program: Program, contract: bytes, caller: bytes, function: str,
         args: tuple[Value, ...], gas_limit: int, fixed: int, height: int, time_ms: int,
         read_only: bool) -> tuple[Value, int, tuple[Event, ...]]:
    host = ChainHost(overlay, contract, caller, height, time_ms, read_only=read_only)
    try:
        result = call_function(program, function, args, host, gas_limit - fixed)
    except ContractError as error:
        raise ContractFailed(error.code, error.message, fixed + getattr(error, "gas_used", 0)) from error
    return result.value, fixed + result.gas_used, tuple(host.events)
