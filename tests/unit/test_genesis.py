"""Genesis (node/genesis.py): every field rule, the initial state, and the chain-identifying hash."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from node import crypto, limits
from node.localnet import default_genesis
from node.genesis import InvalidGenesis, genesis_document, load_genesis, parse_genesis
from node.state import Account, Supply, account_key, supply_key
from node.transactions import Role
from tests.support import ASSETS, keys

REPOSITORY = Path(__file__).resolve().parents[2]
ALICE = crypto.format_address(keys("alice").address)
GATEWAY = crypto.format_address(keys("gateway").address)


def document() -> dict:
    return genesis_document(
        "paychain-test", 1_700_000_000_000, copy.deepcopy(ASSETS), keys("fees").address,
        [{"name": "v0", "public_key": keys("validator-0").public_key.hex(), "role": "merchant", "p2p_address": ""}],
        [{"address": ALICE, "role": "user", "balances": {"CNY": 500, "USD": 7}},
         {"address": GATEWAY, "role": "gateway", "balances": {"CNY": 100}}],
    )


def test_valid_genesis_builds_accounts_and_supplies():
    genesis = parse_genesis(document())
    records = dict(genesis.records)
    alice = records[account_key(keys("alice").address)]
    assert alice == Account(0, int(Role.USER), b"", bytes(20), alice.balances)
    assert (alice.balance_of("CNY"), alice.balance_of("USD")) == (500, 7)
    assert records[account_key(keys("gateway").address)].role == Role.GATEWAY
    assert records[supply_key("CNY")] == Supply(600) and records[supply_key("USD")] == Supply(7)
    assert [key for key, _ in genesis.records] == sorted(records)
    assert genesis.params.fee_account == keys("fees").address
    assert genesis.params.validator_keys == (keys("validator-0").public_key,)
    assert genesis.params.asset("USD").min_fee == 2 and genesis.params.asset("EUR") is None


def test_genesis_state_root_matches_its_records():
    genesis = parse_genesis(document())
    state = genesis.state()
    assert state.records == dict(genesis.records)
    assert state.root == parse_genesis(document()).state().root


def test_genesis_hash_is_stable_and_identifies_the_chain():
    assert parse_genesis(document()).hash == parse_genesis(document()).hash
    changed = document()
    changed["accounts"][0]["balances"]["CNY"] = 501
    assert parse_genesis(changed).hash != parse_genesis(document()).hash
    renamed = document()
    renamed["chain_id"] = "paychain-other"
    assert parse_genesis(renamed).hash != parse_genesis(document()).hash


def test_genesis_hash_ignores_json_key_order_and_account_order():
    reordered = document()
    reordered["accounts"].reverse()
    reordered["assets"].reverse()
    reordered = json.loads(json.dumps(reordered, sort_keys=True))
    assert parse_genesis(reordered).hash == parse_genesis(document()).hash


def test_zero_balances_are_not_stored():
    zero = document()
    zero["accounts"][0]["balances"] = {"CNY": 0}
    assert parse_genesis(zero).state().records[account_key(keys("alice").address)].balances == ()


def test_repository_genesis_loads():
    genesis = load_genesis(REPOSITORY / "genesis.json")
    assert genesis.params.chain_id and genesis.params.validators


def test_load_genesis_from_file(tmp_path):
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(document()))
    assert load_genesis(path).hash == parse_genesis(document()).hash


def test_invalid_genesis_missing_file(tmp_path):
    with pytest.raises(InvalidGenesis, match="cannot read"):
        load_genesis(tmp_path / "absent.json")


def test_invalid_genesis_not_json(tmp_path):
    path = tmp_path / "genesis.json"
    path.write_text("{not json")
    with pytest.raises(InvalidGenesis, match="is not valid JSON"):
        load_genesis(path)


def mutate(path: tuple, value) -> dict:
    changed = document()
    target = changed
    for step in path[:-1]:
        target = target[step]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


DELETE = object()
LONG_NAME = "v" * 65

INVALID = [
    # (id, path, value, message)
    ("chain_id-missing", ("chain_id",), DELETE, "chain_id must be 1-32 characters"),
    ("chain_id-uppercase", ("chain_id",), "Paychain", "chain_id must be 1-32 characters"),
    ("chain_id-too-long", ("chain_id",), "a" * 33, "chain_id must be 1-32 characters"),
    ("chain_id-empty", ("chain_id",), "", "chain_id must be 1-32 characters"),
    ("chain_id-leading-dash", ("chain_id",), "-chain", "chain_id must be 1-32 characters"),
    ("time-negative", ("genesis_time_ms",), -1, "genesis_time_ms must be an integer"),
    ("time-float", ("genesis_time_ms",), 1.5, "genesis_time_ms must be an integer"),
    ("time-bool", ("genesis_time_ms",), True, "genesis_time_ms must be an integer"),
    ("time-string", ("genesis_time_ms",), "1700000000000", "genesis_time_ms must be an integer"),
    ("assets-empty", ("assets",), [], "assets must be a list of 1..32"),
    ("assets-too-many", ("assets",), [{"code": f"A{i:02d}", "decimals": 2, "min_fee": 1} for i in range(33)],
     "assets must be a list of 1..32"),
    ("assets-not-list", ("assets",), {"code": "CNY"}, "assets must be a list"),
    ("asset-not-object", ("assets", 0), "CNY", "assets[0] must be an object"),
    ("asset-code-lowercase", ("assets", 0, "code"), "cny", "assets[0].code must be 2-8 uppercase"),
    ("asset-code-too-long", ("assets", 0, "code"), "ABCDEFGHI", "assets[0].code must be 2-8 uppercase"),
    ("asset-code-one-letter", ("assets", 0, "code"), "C", "assets[0].code must be 2-8 uppercase"),
    ("asset-decimals-too-many", ("assets", 0, "decimals"), 19, "assets[0].decimals must be an integer in 0..18"),
    ("asset-decimals-missing", ("assets", 1, "decimals"), DELETE, "assets[1].decimals"),
    ("asset-min-fee-negative", ("assets", 0, "min_fee"), -1, "assets[0].min_fee must be an integer"),
    ("asset-min-fee-huge", ("assets", 0, "min_fee"), 2**63, "assets[0].min_fee must be an integer"),
    ("asset-twice", ("assets", 1, "code"), "CNY", "assets: each code once"),
    ("fee-account-missing", ("fee_account",), DELETE, "fee_account: an address must be a string"),
    ("fee-account-typo", ("fee_account",), crypto.format_address(keys("fees").address)[:-2] + "aa",
     "fee_account: address"),
    ("fee-account-prefix", ("fee_account",), "0x" + "00" * 20, "fee_account: an address starts with 'pay1'"),
    ("validators-empty", ("validators",), [], "validators must be a list of 1..256"),
    ("validators-not-list", ("validators",), "v0", "validators must be a list"),
    ("validator-not-object", ("validators", 0), "v0", "validators[0] must be an object"),
    ("validator-name-empty", ("validators", 0, "name"), "", "validators[0].name"),
    ("validator-name-long", ("validators", 0, "name"), LONG_NAME, "validators[0].name"),
    ("validator-name-unicode", ("validators", 0, "name"), "välidator", "validators[0].name"),
    ("validator-key-short", ("validators", 0, "public_key"), "ab" * 31, "validators[0].public_key must be 64 hex"),
    ("validator-key-not-hex", ("validators", 0, "public_key"), "zz" * 32, "validators[0].public_key must be 64 hex"),
    ("validator-key-number", ("validators", 0, "public_key"), 12, "validators[0].public_key must be 64 hex"),
    ("validator-role", ("validators", 0, "role"), "admin", "validators[0].role: unknown role 'admin'"),
    ("validator-p2p-long", ("validators", 0, "p2p_address"), "x" * 257, "validators[0].p2p_address"),
    ("validator-p2p-number", ("validators", 0, "p2p_address"), 4001, "validators[0].p2p_address"),
    ("accounts-not-list", ("accounts",), {}, "accounts must be a list"),
    ("account-not-object", ("accounts", 0), ALICE, "accounts[0] must be an object"),
    ("account-address-typo", ("accounts", 0, "address"), ALICE[:-1] + ("a" if ALICE[-1] != "a" else "b"),
     "accounts[0].address: address"),
    ("account-role", ("accounts", 0, "role"), "admin", "accounts[0].role must be one of"),
    ("account-balances-list", ("accounts", 0, "balances"), [["CNY", 5]], "accounts[0].balances must be an object"),
    ("account-unknown-asset", ("accounts", 0, "balances"), {"EUR": 5}, "accounts[0].balances: unknown asset EUR"),
    ("account-negative", ("accounts", 0, "balances"), {"CNY": -5}, "accounts[0].balances.CNY must be an integer"),
    ("account-float", ("accounts", 0, "balances"), {"CNY": 5.5}, "accounts[0].balances.CNY must be an integer"),
    ("account-too-much", ("accounts", 0, "balances"), {"CNY": limits.amount_max + 1},
     "accounts[0].balances.CNY must be an integer"),
    ("supply-overflow", ("accounts", 0, "balances"), {"CNY": limits.amount_max},
     "total supply of CNY exceeds the maximum"),
]


@pytest.mark.parametrize("path, value, message", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_genesis_field(path, value, message):
    with pytest.raises(InvalidGenesis) as caught:
        parse_genesis(mutate(path, value))
    assert message in str(caught.value)


@pytest.mark.parametrize("value", [[], "genesis", None, 5])
def test_invalid_genesis_not_an_object(value):
    with pytest.raises(InvalidGenesis, match="genesis must be a JSON object"):
        parse_genesis(value)


def test_invalid_genesis_address_listed_twice():
    twice = document()
    twice["accounts"].append({"address": ALICE, "balances": {}})
    with pytest.raises(InvalidGenesis, match=r"accounts\[2\]: address listed twice"):
        parse_genesis(twice)


def test_invalid_genesis_validator_key_twice():
    twice = document()
    twice["validators"].append(dict(twice["validators"][0], name="v1"))
    with pytest.raises(InvalidGenesis, match="validators: each public key once"):
        parse_genesis(twice)


def test_largest_total_supply_is_accepted():
    full = mutate(("accounts", 0, "balances"), {"CNY": limits.amount_max - 100})
    assert dict(parse_genesis(full).records)[supply_key("CNY")] == Supply(limits.amount_max)


@pytest.mark.parametrize("field, value", [("name", "v\x00"), ("name", "välidator"), ("p2p_address", "/ip4/\n"),
                                          ("p2p_address", "/dns/é")])
def test_invalid_validator_text_fields(field, value):
    document = default_genesis(1)
    document["validators"][0][field] = value
    with pytest.raises(InvalidGenesis, match=f"validators\\[0\\].{field}"):
        parse_genesis(document)
