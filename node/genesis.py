"""genesis.json -> chain parameters, validator set and the initial state.

The genesis file is JSON for people to read and edit; it is validated field by field
on load (errors name the field), and its canonical encoding is hashed so that a store
can refuse to run against a different chain.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from node import crypto, encoding, limits
from node.encoding import ADDRESS, AMOUNT, ASSET, CHAIN_ID, U64, Seq, Struct, Text, UInt, check_schema
from node.crypto import contract_address
from node.state import (NO_ADDRESS, Account, Balance, CommittedState, DeployerGrant, State, Supply, ValidatorInfo,
                        account_key, deployer_key, encode_record, supply_key)
from node.transactions import ROLE_NAMES, Role, parse_role


class InvalidGenesis(ValueError):
    """A genesis file that breaks a rule; the message names the field."""


@check_schema
@dataclass(frozen=True, slots=True)
class AssetParams:
    SCHEMA: ClassVar = (ASSET, UInt(18), AMOUNT)
    code: str
    decimals: int
    """Minor units per major unit = 10**decimals (CNY: 2)."""
    min_fee: int
    """Smallest fee, in minor units, a transaction paying in this asset may offer."""


@check_schema
@dataclass(frozen=True, slots=True)
class SystemContract:
    """A contract deployed at genesis, known by name (e.g. "orders")."""

    SCHEMA: ClassVar = (Text(32, ascii_only=True), ADDRESS)
    name: str
    address: bytes


@check_schema
@dataclass(frozen=True, slots=True)
class ChainParams:
    SCHEMA: ClassVar = (CHAIN_ID, U64, Seq(Struct(AssetParams), limits.assets_max), ADDRESS,
                        Seq(Struct(ValidatorInfo), limits.validators_max), Seq(Struct(SystemContract), 16))
    chain_id: str
    genesis_time_ms: int
    assets: tuple[AssetParams, ...]
    fee_account: bytes
    """Every transaction fee is credited here."""
    validators: tuple[ValidatorInfo, ...]
    contracts: tuple[SystemContract, ...] = ()

    def asset(self, code: str) -> AssetParams | None:
        for asset in self.assets:
            if asset.code == code:
                return asset
        return None

    @property
    def validator_keys(self) -> tuple[bytes, ...]:
        return tuple(v.public_key for v in self.validators)

    def contract(self, name: str) -> bytes | None:
        """The address of the system contract called `name`."""
        for contract in self.contracts:
            if contract.name == name:
                return contract.address
        return None


@dataclass(frozen=True, slots=True)
class Genesis:
    params: ChainParams
    records: tuple[tuple[bytes, Any], ...]
    """Initial state records (key, record), sorted by key."""
    hash: bytes
    """Hash of params and initial state: identifies the chain in the store."""
    signing_domain: crypto.SigningDomain = field(init=False)
    """What every signature on this chain is made for: the chain id and `hash`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "signing_domain", crypto.SigningDomain(self.params.chain_id, self.hash))

    def state(self) -> CommittedState:
        committed = CommittedState(self.params, signing_domain=self.signing_domain)
        committed.load((key, encode_record(record)) for key, record in self.records)
        return committed


_CHAIN_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_ASSET_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{1,7}$")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidGenesis(message)


def _integer(value: Any, where: str, low: int = 0, high: int = limits.amount_max) -> int:
    _require(type(value) is int and low <= value <= high, f"{where} must be an integer in {low}..{high}")
    return value


def parse_genesis(document: dict[str, Any]) -> Genesis:
    """Validate a genesis document (parsed JSON) and build the initial state."""
    _require(isinstance(document, dict), "genesis must be a JSON object")
    chain_id = document.get("chain_id")
    _require(isinstance(chain_id, str) and bool(_CHAIN_ID_PATTERN.match(chain_id)),
             "chain_id must be 1-32 characters of a-z, 0-9 and '-'")
    genesis_time_ms = _integer(document.get("genesis_time_ms"), "genesis_time_ms", high=2**63 - 1)
    assets = _parse_assets(document.get("assets"))
    fee_account = _parse_address(document.get("fee_account"), "fee_account")
    validators = _parse_validators(document.get("validators"))
    contracts_in = document.get("contracts", [])
    _require(isinstance(contracts_in, list) and len(contracts_in) <= 16, "contracts must be a list of at most 16")
    contracts = tuple(SystemContract(_contract_name(item, i), contract_address(NO_ADDRESS, i))
                      for i, item in enumerate(contracts_in))
    _require(len({c.name for c in contracts}) == len(contracts), "contracts: a name is used twice")
    params = ChainParams(chain_id, genesis_time_ms, assets, fee_account, validators, contracts)
    records = _parse_accounts(document.get("accounts", []), {a.code for a in assets})
    records = tuple(sorted(records + _parse_deployers(document.get("deployers", []))))
    records = _deploy_contracts(params, records, contracts_in)
    wire = [encoding.wire_of(params), [[key, encoding.wire_of(record)] for key, record in records]]
    return Genesis(params, records, crypto.hash_bytes(encoding.pack(wire)))


def _parse_assets(value: Any) -> tuple[AssetParams, ...]:
    _require(isinstance(value, list) and 1 <= len(value) <= limits.assets_max,
             f"assets must be a list of 1..{limits.assets_max} assets")
    assets = []
    for i, item in enumerate(value):
        _require(isinstance(item, dict), f"assets[{i}] must be an object")
        code = item.get("code")
        _require(isinstance(code, str) and bool(_ASSET_PATTERN.match(code)),
                 f"assets[{i}].code must be 2-8 uppercase letters/digits, e.g. CNY")
        decimals = _integer(item.get("decimals"), f"assets[{i}].decimals", 0, 18)
        min_fee = _integer(item.get("min_fee"), f"assets[{i}].min_fee")
        assets.append(AssetParams(code, decimals, min_fee))
    codes = [a.code for a in assets]
    _require(len(set(codes)) == len(codes), "assets: each code once")
    return tuple(sorted(assets, key=lambda a: a.code))


def _parse_address(value: Any, where: str) -> bytes:
    try:
        return crypto.parse_address(value)
    except crypto.InvalidAddress as error:
        raise InvalidGenesis(f"{where}: {error}") from error


def _parse_validators(value: Any) -> tuple[ValidatorInfo, ...]:
    _require(isinstance(value, list) and 1 <= len(value) <= limits.validators_max,
             f"validators must be a list of 1..{limits.validators_max}")
    validators = []
    for i, item in enumerate(value):
        _require(isinstance(item, dict), f"validators[{i}] must be an object")
        name = item.get("name")
        _require(isinstance(name, str) and 0 < len(name) <= 64 and name.isascii() and name.isprintable(),
                 f"validators[{i}].name must be 1-64 printable ASCII characters")
        try:
            public_key = bytes.fromhex(item.get("public_key", ""))
        except (TypeError, ValueError):
            public_key = b""
        _require(len(public_key) == 32, f"validators[{i}].public_key must be 64 hex characters")
        try:
            role = parse_role(item.get("role", ""))
        except ValueError as error:
            raise InvalidGenesis(f"validators[{i}].role: {error}") from error
        p2p_address = item.get("p2p_address", "")
        _require(isinstance(p2p_address, str) and len(p2p_address) <= 256 and p2p_address.isascii()
                 and p2p_address.isprintable(), f"validators[{i}].p2p_address must be printable ASCII (<= 256)")
        validators.append(ValidatorInfo(name, public_key, int(role), p2p_address))
    keys = [v.public_key for v in validators]
    _require(len(set(keys)) == len(keys), "validators: each public key once")
    return tuple(validators)


def _parse_accounts(value: Any, asset_codes: set[str]) -> tuple[tuple[bytes, Any], ...]:
    _require(isinstance(value, list) and len(value) <= limits.genesis_accounts_max,
             f"accounts must be a list of at most {limits.genesis_accounts_max}")
    records: dict[bytes, Any] = {}
    supplies = {code: 0 for code in asset_codes}
    for i, item in enumerate(value):
        _require(isinstance(item, dict), f"accounts[{i}] must be an object")
        address = _parse_address(item.get("address"), f"accounts[{i}].address")
        _require(account_key(address) not in records, f"accounts[{i}]: address listed twice")
        role_name = item.get("role", "user")
        _require(role_name in ROLE_NAMES.values(), f"accounts[{i}].role must be one of {list(ROLE_NAMES.values())}")
        balances_in = item.get("balances", {})
        _require(isinstance(balances_in, dict), f"accounts[{i}].balances must be an object")
        balances = []
        for code, amount in sorted(balances_in.items()):
            _require(code in asset_codes, f"accounts[{i}].balances: unknown asset {code}")
            amount = _integer(amount, f"accounts[{i}].balances.{code}")
            if amount:
                balances.append(Balance(code, amount))
                supplies[code] += amount
                _require(supplies[code] <= limits.amount_max, f"total supply of {code} exceeds the maximum")
        role = int(parse_role(role_name))
        records[account_key(address)] = Account(0, role, b"", bytes(20), tuple(balances))
    for code, amount in supplies.items():
        records[supply_key(code)] = Supply(amount)
    return tuple(sorted(records.items()))


def _parse_deployers(value: Any) -> tuple[tuple[bytes, Any], ...]:
    """Accounts allowed to deploy contracts from the start (governance can grant more)."""
    _require(isinstance(value, list) and len(value) <= limits.validators_max,
             f"deployers must be a list of at most {limits.validators_max} addresses")
    grants = {deployer_key(_parse_address(item, f"deployers[{i}]")): DeployerGrant(0) for i, item in enumerate(value)}
    _require(len(grants) == len(value), "deployers lists an address twice")
    return tuple(grants.items())


def _contract_name(item: Any, index: int) -> str:
    _require(isinstance(item, dict) and set(item) <= {"name", "source", "init_args"},
             f"contracts[{index}] must be an object with name, source and init_args")
    name = item.get("name")
    _require(isinstance(name, str) and name.isidentifier() and name.isascii() and len(name) <= 32,
             f"contracts[{index}].name must be an identifier of up to 32 ASCII characters")
    return name


def _deploy_contracts(params: ChainParams, records: tuple[tuple[bytes, Any], ...],
                      contracts_in: list[Any]) -> tuple[tuple[bytes, Any], ...]:
    """Run each genesis contract's deploy (and `init`) over the initial state; the records after it."""
    if not contracts_in:
        return records
    from node.contracts import runtime  # the VM is needed only for genesis contracts
    from node.contracts.values_json import InvalidValue, value_from_json
    base = CommittedState(params)
    base.load((key, encode_record(record)) for key, record in records)
    state = State(base)
    for index, item in enumerate(contracts_in):
        source = item.get("source")
        _require(isinstance(source, str), f"contracts[{index}].source must be the contract's source text")
        try:
            init_args = encoding.encode_value(tuple(value_from_json(item.get("init_args", []),
                                                                    f"contracts[{index}].init_args")))
            runtime.deploy(state, NO_ADDRESS, index, source, init_args, limits.contract_gas_max, 0,
                           params.genesis_time_ms, system=True)
        except (InvalidValue, encoding.EncodeError) as error:
            raise InvalidGenesis(f"contracts[{index}].init_args: {error}") from error
        except runtime.ContractFailed as failure:
            raise InvalidGenesis(f"contracts[{index}] ({item['name']}) failed to deploy: {failure.code}: "
                                 f"{failure.message}") from failure
    merged = dict(records)
    merged.update(state.changes)
    return tuple(sorted((key, record) for key, record in merged.items() if record is not None))


def load_genesis(path: Path) -> Genesis:
    try:
        document = json.loads(Path(path).read_text())
    except OSError as error:
        raise InvalidGenesis(f"cannot read {path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise InvalidGenesis(f"{path} is not valid JSON: {error}") from error
    return parse_genesis(document)


def genesis_document(chain_id: str, genesis_time_ms: int, assets: list[dict[str, Any]], fee_account: bytes,
                     validators: list[dict[str, Any]], accounts: list[dict[str, Any]],
                     deployers: list[bytes] = (), contracts: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """A genesis document in the JSON shape `parse_genesis` reads."""
    return {
        "chain_id": chain_id,
        "genesis_time_ms": genesis_time_ms,
        "assets": assets,
        "fee_account": crypto.format_address(fee_account),
        "validators": validators,
        "accounts": accounts,
        **({"deployers": [crypto.format_address(d) for d in deployers]} if deployers else {}),
        **({"contracts": list(contracts)} if contracts else {}),
    }


__all__ = ["AssetParams", "ChainParams", "Genesis", "InvalidGenesis", "Role", "ValidatorInfo", "load_genesis",
           "parse_genesis", "genesis_document"]
