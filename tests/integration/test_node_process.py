"""A real node process with a real LevelDB folder, driven only through `paywallet` and JSON-RPC."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from node import crypto
from node.localnet import DEV_PASSWORD, dev_keys
from tests.processes import LocalNetwork, localnet_down, localnet_up, paychain

pytestmark = pytest.mark.slow

ALICE = crypto.format_address(dev_keys("alice").address)
BOB = crypto.format_address(dev_keys("bob").address)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> LocalNetwork:
    home = tmp_path_factory.mktemp("localnet")
    network = localnet_up(home)
    yield network
    localnet_down(home)


def balance(network: LocalNetwork, address: str, asset: str) -> int:
    return network.rpc.call("account_get", address)["balances"].get(asset, 0)


def supply_total(network: LocalNetwork, asset: str) -> int:
    """Sum of every dev account's balance plus the fee account (the only holders on this network)."""
    holders = [crypto.format_address(dev_keys(n).address) for n in ("gateway", "merchant", "alice", "bob", "carol",
                                                                      "fees")]
    return sum(balance(network, h, asset) for h in holders)


def test_transfer_with_wait_is_final_and_visible_over_rpc(network: LocalNetwork) -> None:
    before_alice, before_bob = balance(network, ALICE, "CNY"), balance(network, BOB, "CNY")
    result = network.wallet("transfer", "--from", "alice", "--to", "bob", "--amount", "12.50", "--asset", "CNY",
                            "--wait", "--json")
    assert result.code == 0, result.stderr
    receipt = result.json()
    assert receipt["status"] == "committed" and receipt["receipt"]["success"]
    assert balance(network, BOB, "CNY") == before_bob + 1250
    assert balance(network, ALICE, "CNY") == before_alice - 1250 - 1  # amount + minimum fee
    shown = network.wallet("tx", receipt["hash"], "--json").json()
    assert shown["status"] == "committed" and shown["height"] == receipt["height"]
    block = network.rpc.call("chain_getBlock", receipt["height"])
    assert receipt["hash"] in block["transactions"]
    assert block["certificate"]["block_hash"] == block["header"]["hash"]


def test_recharge_post_credits_and_void_does_not(network: LocalNetwork) -> None:
    supply_before = supply_total(network, "USD")
    request = network.wallet("recharge", "--from", "alice", "--gateway", "gateway", "--amount", "50", "--asset",
                             "USD", "--reference", "bank-1", "--wait", "--json").json()
    assert request["receipt"]["success"]
    alice_before = balance(network, ALICE, "USD")
    posted = network.wallet("recharge-post", request["hash"], "--from", "gateway", "--reference", "ok", "--wait",
                            "--json")
    assert posted.code == 0, posted.stderr
    assert balance(network, ALICE, "USD") == alice_before + 5000
    assert network.rpc.call("recharge_get", request["hash"])["status"] == "posted"
    again = network.wallet("recharge-post", request["hash"], "--from", "gateway", "--reference", "twice", "--wait",
                           "--json")
    assert again.code == 7 and again.json()["receipt"]["code"] == "request_resolved"
    voided_request = network.wallet("recharge", "--from", "bob", "--gateway", "gateway", "--amount", "5",
                                    "--asset", "USD", "--wait", "--json").json()
    bob_before = balance(network, BOB, "USD")
    voided = network.wallet("recharge-void", voided_request["hash"], "--from", "gateway", "--reason", "no funds",
                            "--wait", "--json")
    assert voided.code == 0
    assert balance(network, BOB, "USD") == bob_before
    assert network.rpc.call("recharge_get", voided_request["hash"])["status"] == "voided"
    # Supply grew by exactly the posted recharge (fees move between holders, they do not mint).
    assert supply_total(network, "USD") == supply_before + 5000


def test_withdraw_burns_and_history_lists_it(network: LocalNetwork) -> None:
    supply_before = supply_total(network, "CNY")
    result = network.wallet("withdraw", "--from", "carol", "--gateway", "gateway", "--amount", "100", "--asset",
                            "CNY", "--payout-reference", "IBAN-1", "--wait", "--json")
    assert result.code == 0, result.stderr
    assert supply_total(network, "CNY") == supply_before - 10000
    page = network.wallet("history", "carol", "--json").json()
    assert page["items"][0]["hash"] == result.json()["hash"]
    assert page["items"][0]["transaction"]["kind"] == "withdraw"


def test_new_account_must_be_registered_before_it_can_receive(network: LocalNetwork, tmp_path: Path) -> None:
    created = network.wallet("new", "dave", "--json")
    assert created.code == 0, created.stderr
    dave = created.json()["address"]
    keystore = network.home / "wallet" / "dave.json"
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    refused = network.wallet("transfer", "--from", "alice", "--to", dave, "--amount", "1", "--asset", "CNY",
                             "--wait", "--json")
    assert refused.code == 7 and refused.json()["receipt"]["code"] == "not_registered"
    kyc = tmp_path / "passport.txt"
    kyc.write_text("Dave Example, passport X123")
    registered = network.wallet("register", dave, "--role", "user", "--kyc-file", str(kyc), "--from", "gateway",
                                "--wait", "--json")
    assert registered.code == 0, registered.stderr
    account = network.rpc.call("account_get", dave)
    assert account["role"] == "user"
    assert account["kyc_hash"] == "0x" + crypto.hash_bytes(kyc.read_bytes()).hex()
    paid = network.wallet("transfer", "--from", "alice", "--to", dave, "--amount", "1", "--asset", "CNY", "--wait")
    assert paid.code == 0, paid.stderr
    assert balance(network, dave, "CNY") == 100


def test_export_then_import_gives_the_same_address(network: LocalNetwork, tmp_path: Path) -> None:
    secret = tmp_path / "alice.secret"
    exported = network.wallet("export", "alice", "--out", str(secret))
    assert exported.code == 0, exported.stderr
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text().strip() not in exported.stdout  # the secret is never printed
    imported = network.wallet("import", "alice-copy", "--secret-file", str(secret), "--json")
    assert imported.code == 0, imported.stderr
    assert imported.json()["address"] == ALICE
    names = {row["name"]: row["address"] for row in network.wallet("list", "--json").json()}
    assert names["alice-copy"] == names["alice"] == ALICE


@pytest.mark.parametrize("args, password, code, fragment", [
    (("transfer", "--from", "alice", "--to", "bob", "--amount", "1", "--asset", "CNY"), "wrong-password", 5,
     "wrong password"),
    (("transfer", "--from", "alice", "--to", BOB[:-3] + "aaa", "--amount", "1", "--asset", "CNY"), DEV_PASSWORD, 1,
     "address"),
    (("transfer", "--from", "alice", "--to", "bob", "--amount", "99999999999", "--asset", "CNY"), DEV_PASSWORD, 4,
     "insufficient_funds"),
    (("transfer", "--from", "alice", "--to", "bob", "--amount", "1", "--asset", "EUR"), DEV_PASSWORD, 1,
     "unknown asset"),
    (("transfer", "--from", "alice", "--to", "bob", "--amount", "0.001", "--asset", "CNY"), DEV_PASSWORD, 1,
     "decimals"),
    (("transfer", "--from", "nobody", "--to", "bob", "--amount", "1", "--asset", "CNY"), DEV_PASSWORD, 5,
     "no key named"),
])
def test_invalid_wallet_input_fails_clearly_and_moves_nothing(network: LocalNetwork, args: tuple[str, ...],
                                                              password: str, code: int, fragment: str) -> None:
    before = network.rpc.call("account_get", ALICE)
    result = network.wallet(*args, password=password)
    assert result.code == code, (result.stdout, result.stderr)
    assert fragment in result.stderr
    as_json = network.wallet(*args, "--json", password=password)
    assert as_json.code == code and as_json.json()["exit_code"] == code
    after = network.rpc.call("account_get", ALICE)
    assert after["balances"] == before["balances"] and after["pending_nonce"] == before["pending_nonce"]


def test_corrupt_keystore_is_reported(network: LocalNetwork) -> None:
    (network.home / "wallet" / "broken.json").write_text('{"version": 1, "address": "x"')
    result = network.wallet("transfer", "--from", "broken", "--to", "bob", "--amount", "1", "--asset", "CNY")
    assert result.code == 5 and "corrupt" in result.stderr
    listed = network.wallet("list", "--json").json()
    assert any(row["name"] == "broken" and "error" in row for row in listed)


def test_unreachable_node_exits_3(network: LocalNetwork) -> None:
    result = network.wallet("balance", "alice", env={"PAYCHAIN_RPC": "http://127.0.0.1:9/rpc"})
    assert result.code == 3 and "cannot reach" in result.stderr
    status = paychain("status", "--rpc", "http://127.0.0.1:9/rpc")
    assert status.code == 3


def test_operator_status_and_every_command_has_help(network: LocalNetwork) -> None:
    status = paychain("status", "--rpc", network.rpc_url, "--json")
    assert status.code == 0 and status.json()["chain_id"] == "paychain-local"
    for command in ("new", "import", "export", "list", "balance", "transfer", "recharge", "withdraw", "history",
                    "tx", "recharge-post", "recharge-void", "register", "merchant-status", "pay", "orders", "order",
                    "ship", "confirm", "cancel", "settle", "refund request", "refund approve", "refund reject",
                    "refund give", "catalog add", "catalog update", "catalog list", "contract deploy", "contract call",
                    "contract query", "contract show"):
        helped = network.wallet(*command.split(), "--help")
        assert helped.code == 0 and "Usage:" in helped.stdout, command
    for command in (("keys", "generate"), ("keys", "show"), ("genesis", "init"), ("genesis", "check"), ("run",),
                    ("localnet", "up"), ("localnet", "down"), ("localnet", "status"), ("status",),
                    ("gateway", "run"), ("gateway", "api-key"), ("gateway", "demo-receiver")):
        assert paychain(*command, "--help").code == 0, command


def test_localnet_status_reports_the_running_node(network: LocalNetwork) -> None:
    rows = json.loads(paychain("localnet", "status", "--home", str(network.home), "--json").stdout)
    assert rows[0]["running"] and rows[0]["status"]["chain_id"] == "paychain-local"


def test_localnet_up_refuses_to_start_twice(network: LocalNetwork) -> None:
    again = paychain("localnet", "up", "--home", str(network.home), "--validators", "1")
    assert again.code == 1 and "already running" in again.stderr
    assert network.rpc.call("node_status")["chain_id"] == "paychain-local"  # the first one is untouched


def test_repository_genesis_is_the_documented_local_genesis() -> None:
    from node.localnet import default_genesis
    repository_genesis = Path(__file__).resolve().parents[2] / "genesis.json"
    assert json.loads(repository_genesis.read_text()) == default_genesis(4)
    checked = paychain("genesis", "check", str(repository_genesis), "--json")
    assert checked.code == 0 and checked.json()["chain_id"] == "paychain-local"


def test_localnet_full_nodes_need_a_multi_validator_network(tmp_path) -> None:
    refused = paychain("localnet", "up", "--home", str(tmp_path), "--validators", "1", "--full-nodes", "1")
    assert refused.code == 1 and "--full-nodes needs a multi-validator network" in refused.stderr
    assert not (tmp_path / "genesis.json").exists()


def test_chain_text_reaches_the_terminal_escaped(network: LocalNetwork) -> None:
    """A product name or payout reference is anyone's to write: an OSC sequence would retitle the reader's
    terminal, U+202E would make the line read backwards. Text output shows them as escapes."""
    hostile = "Tea\x1b]0;pwned\x07\u202eeslaf"
    added = network.wallet("catalog", "add", "--from", "merchant", "--product", "osc-tea", "--name", hostile,
                           "--price", "1.00", "--currency", "CNY", "--stock", "5", "--limit", "1",
                           "--fee-asset", "CNY", "--wait")
    assert added.code == 0, added.stdout + added.stderr
    withdrawn = network.wallet("withdraw", "--from", "carol", "--gateway", "gateway", "--amount", "1", "--asset",
                               "CNY", "--payout-reference", "IBAN\u202e-2", "--wait")
    assert withdrawn.code == 0, withdrawn.stderr
    for shown in (network.wallet("catalog", "list", "merchant"), network.wallet("history", "carol")):
        assert shown.code == 0, shown.stderr
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\u202e" not in shown.stdout
    listed = network.wallet("catalog", "list", "merchant").stdout
    assert "Tea\\u001b]0;pwned\\u0007\\u202eeslaf" in listed
    as_json = network.wallet("catalog", "list", "merchant", "--json").json()
    assert any(product.get("name") == hostile for product in _products(as_json))   # JSON keeps the data as it is


def _products(listing: object) -> list[dict]:
    items = listing.get("products", listing) if isinstance(listing, dict) else listing
    return [item for item in items if isinstance(item, dict)]
