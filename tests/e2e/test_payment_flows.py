"""Payment flows end to end on a 4-validator local network, through `paywallet` only.

A gateway registers a new merchant and a new buyer (KYC), the buyer tops up through a
recharge the gateway posts, the merchant lists a product, and the buyer goes through every
order flow: buy → ship → confirm; buy → cancel; buy → refund; buy → ship → auto-complete
by `settle` once the confirmation window has passed. Each flow's money is checked.
"""

from __future__ import annotations

from typing import Any

import pytest

from node.localnet import ORDERS_INIT_ARGS
from tests.processes import LocalNetwork, localnet_down, validator_network_up
from tests.support import dev_transfer, network_of

pytestmark = pytest.mark.slow

FEE_BPS, CONFIRM_BLOCKS, _ = ORDERS_INIT_ARGS


def ok(network: LocalNetwork, *args: str) -> dict[str, Any]:
    """Run a wallet command that must succeed (committed and successful with --wait); its JSON output."""
    result = network.wallet(*args, "--json")
    assert result.code == 0, f"paywallet {' '.join(args)} -> {result.code}: {result.stdout} {result.stderr}"
    return result.json()


def sent(network: LocalNetwork, *args: str) -> dict[str, Any]:
    return ok(network, *args, "--wait")


def balance(network: LocalNetwork, who: str, asset: str = "CNY") -> int:
    return ok(network, "balance", who)["balances"].get(asset, 0)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> LocalNetwork:
    """The network with a registered merchant `shop` (selling tea) and a registered, funded buyer `dave`."""
    home = tmp_path_factory.mktemp("payments")
    nodes = validator_network_up(home / "net", 4)
    network = nodes[1]  # talk to a validator that is not node 0, for variety
    try:
        kyc = home / "kyc.txt"
        kyc.write_text("identity document")
        for name, role in (("shop", "merchant"), ("dave", "user")):
            address = ok(network, "new", name)["address"]
            sent(network, "register", address, "--role", role, "--kyc-file", str(kyc), "--from", "gateway")
            sent(network, "transfer", "--from", "bob", "--to", name, "--amount", "20", "--asset", "CNY")  # for fees
        request = sent(network, "recharge", "--from", "dave", "--gateway", "gateway", "--amount", "500",
                       "--asset", "CNY", "--reference", "bank transfer 42")
        sent(network, "recharge-post", request["hash"], "--from", "gateway", "--reference", "funds received")
        assert balance(network, "dave") == 2_000 + 50_000 - 1  # 20.00 + 500.00 - the request's fee
        sent(network, "catalog", "add", "--from", "shop", "--product", "tea", "--name", "Green tea", "--price",
             "12.50", "--currency", "CNY", "--stock", "20", "--limit", "5")
        yield network
    finally:
        localnet_down(nodes[0].home)


def buy(network: LocalNetwork, quantity: int = 2) -> str:
    paid = sent(network, "pay", "--from", "dave", "--merchant", "shop", "--product", "tea", "--quantity",
                str(quantity))
    assert paid["receipt"]["success"]
    return paid["order_id"]


def state_of(network: LocalNetwork, order_id: str) -> str:
    return ok(network, "order", order_id)["state"]


def test_buy_ship_confirm(shop: LocalNetwork) -> None:
    merchant_before = balance(shop, "shop")
    order_id = buy(shop, 2)
    assert state_of(shop, order_id) == "created"
    sent(shop, "ship", order_id, "--from", "shop", "--tracking", "SF123")
    sent(shop, "confirm", order_id, "--from", "dave")
    assert state_of(shop, order_id) == "completed"
    fee = 2_500 * FEE_BPS // 10_000
    ship_fee = 1 + 50  # minimum fee + the 50,000-gas limit's share
    assert balance(shop, "shop") == merchant_before + 2_500 - fee - ship_fee


def test_buy_then_cancel(shop: LocalNetwork) -> None:
    before = balance(shop, "dave")
    order_id = buy(shop, 1)
    sent(shop, "cancel", order_id, "--from", "dave")
    assert state_of(shop, order_id) == "canceled"
    assert balance(shop, "dave") == before - 2 * 51  # only the two calls' fees


def test_buy_then_refund(shop: LocalNetwork) -> None:
    before = balance(shop, "dave")
    order_id = buy(shop, 1)
    sent(shop, "ship", order_id, "--from", "shop", "--tracking", "SF9")
    sent(shop, "refund", "request", order_id, "--from", "dave", "--reason", "wrong colour")
    rejected_twice = shop.wallet("refund", "request", order_id, "--from", "dave", "--reason", "again", "--wait",
                                 "--json")
    assert rejected_twice.code == 7 and "is refund_requested" in rejected_twice.json()["receipt"]["message"]
    sent(shop, "refund", "approve", order_id, "--from", "shop")
    assert state_of(shop, order_id) == "refunded"
    assert balance(shop, "dave") == before - 3 * 51


def test_merchant_gives_a_refund_of_its_own_accord(shop: LocalNetwork) -> None:
    before = balance(shop, "dave")
    order_id = buy(shop, 1)
    refused = shop.wallet("refund", "give", order_id, "--from", "shop", "--reason", "early", "--wait", "--json")
    assert refused.code == 7 and "only a shipped order is refunded" in refused.json()["receipt"]["message"]
    sent(shop, "ship", order_id, "--from", "shop", "--tracking", "SF11")
    sent(shop, "refund", "give", order_id, "--from", "shop", "--reason", "out of stock after all")
    assert state_of(shop, order_id) == "refunded"
    assert balance(shop, "dave") == before - 51  # only the order's own fee


def test_auto_complete_after_the_confirmation_window(shop: LocalNetwork) -> None:
    order_id = buy(shop, 1)
    sent(shop, "ship", order_id, "--from", "shop", "--tracking", "SF10")
    early = shop.wallet("settle", order_id, "--from", "carol", "--wait", "--json")
    assert early.code == 7 and "deadline has not passed" in early.json()["receipt"]["message"]
    shipped_at = ok(shop, "order", order_id)["shipped_height"]
    while ok(shop, "balance", "carol")["height"] < shipped_at + CONFIRM_BLOCKS:
        shop.rpc.call("tx_send", "0x" + _tiny_transfer(shop).hex())  # blocks only come with transactions
        shop.wait_height(shop.rpc.call("node_status")["height"] + 1)
    sent(shop, "settle", order_id, "--from", "carol")
    assert state_of(shop, order_id) == "completed"
    listed = ok(shop, "orders", "dave", "--role", "buyer")
    states = {order["order_id"]: order["state"] for order in listed["orders"]}
    assert states[order_id] == "completed" and "canceled" in states.values() and "refunded" in states.values()


def _tiny_transfer(network: LocalNetwork) -> bytes:
    nonce = network.rpc.call("account_get", ok(network, "balance", "alice")["address"])["pending_nonce"]
    return dev_transfer(network_of(network.rpc), "alice", nonce, "bob", 1)


def test_governance_risk_limit_takes_effect_on_every_node(shop: LocalNetwork) -> None:
    proposal = sent(shop, "governance", "propose", "risk-rules", "--limit", "user:CNY:100:0", "--from",
                    "validator-0")
    proposal_id = proposal["proposal_id"]
    for operator in ("validator-1", "validator-2"):
        sent(shop, "governance", "approve", proposal_id, "--from", operator)
    assert ok(shop, "governance", "show", proposal_id)["status"] == "executed"
    height = shop.rpc.call("node_status")["height"]
    for node in _all_nodes(shop):
        node.wait_height(height)
        assert node.rpc.call("risk_getRules")["limits"] == [
            {"role": "user", "asset": "CNY", "per_tx_max": 10_000, "daily_max": 0}]
    refused = shop.wallet("transfer", "--from", "dave", "--to", "alice", "--amount", "150", "--asset", "CNY",
                          "--wait", "--json")
    assert refused.code == 7 and refused.json()["receipt"]["code"] == "per_tx_limit"
    order = shop.wallet("pay", "--from", "dave", "--merchant", "shop", "--product", "tea", "--quantity", "5",
                        "--wait", "--json")  # 62.50 CNY is within the limit
    assert order.code == 0, order.stdout
    # Lift the limit again: a proposal with no limits.
    lifted = sent(shop, "governance", "propose", "risk-rules", "--from", "validator-3")["proposal_id"]
    for operator in ("validator-0", "validator-1"):
        sent(shop, "governance", "approve", lifted, "--from", operator)
    assert shop.rpc.call("risk_getRules")["limits"] == []


def _all_nodes(network: LocalNetwork) -> list[LocalNetwork]:
    from node.localnet import load_processes
    return [LocalNetwork(network.home, process.rpc_url, process.pid) for process in load_processes(network.home)]


def test_cross_border_payment_approved_two_of_three(shop: LocalNetwork, tmp_path) -> None:
    sent(shop, "multisig", "deposit", "--from", "gateway", "--asset", "USD", "--amount", "1000")
    quote = tmp_path / "quote.json"
    ok(shop, "multisig", "quote", "--from", "gateway", "--pay", "100", "--pay-asset", "CNY", "--settle", "14",
       "--settle-asset", "USD", "--valid-blocks", "50", "--out", str(quote))
    dave_cny, shop_usd, gateway_cny = balance(shop, "dave"), balance(shop, "shop", "USD"), balance(shop, "gateway")
    proposed = sent(shop, "multisig", "propose", "--from", "dave", "--merchant", "shop", "--quote", str(quote))
    proposal_id = proposed["proposal_id"]
    assert ok(shop, "multisig", "show", proposal_id)["state"] == "proposed"
    sent(shop, "multisig", "approve", proposal_id, "--from", "shop")  # the second of three approvals
    assert ok(shop, "multisig", "show", proposal_id)["state"] == "executed"
    assert balance(shop, "shop", "USD") == shop_usd + 1_400
    assert balance(shop, "gateway") == gateway_cny + 10_000
    assert balance(shop, "dave") < dave_cny - 10_000  # the payment and two fees
    twice = shop.wallet("multisig", "approve", proposal_id, "--from", "gateway", "--wait", "--json")
    assert twice.code == 7  # executed already: no second settlement
    reused = shop.wallet("multisig", "propose", "--from", "dave", "--merchant", "shop", "--quote", str(quote),
                         "--wait", "--json")
    assert reused.code == 7 and "used" in reused.json()["receipt"]["message"]


COUNTER = '''
def init(start):
    storage_put("count", start)


def bump(n):
    if n <= 0:
        revert("n must be positive")
    storage_put("count", storage_get("count") + n)
    emit("bumped", {"by": n})


def count():
    return storage_get("count")
'''


def test_developer_deploys_calls_and_queries_a_contract(shop: LocalNetwork, tmp_path) -> None:
    source = tmp_path / "counter.py"
    source.write_text(COUNTER)
    deployed = sent(shop, "contract", "deploy", str(source), "--args", "[5]", "--gas", "200000", "--from",
                    "developer")
    address = deployed["contract"]
    assert deployed["receipt"]["success"] and deployed["receipt"]["events"][0]["name"] == "contract_deployed"
    shown = ok(shop, "contract", "show", address)
    assert shown["functions"] == ["bump", "count", "init"] and shown["source"] == COUNTER
    called = sent(shop, "contract", "call", address, "bump", "--args", "[3]", "--from", "alice")
    assert called["receipt"]["events"][0] == {"name": "bumped", "contract": address, "data": {"by": 3}}
    assert ok(shop, "contract", "query", address, "count")["value"] == 8
    reverted = shop.wallet("contract", "call", address, "bump", "--args", "[0]", "--from", "alice", "--wait",
                           "--json")
    assert reverted.code == 7 and reverted.json()["receipt"]["code"] == "reverted"
    denied = shop.wallet("contract", "deploy", str(source), "--args", "[1]", "--from", "alice", "--wait", "--json")
    assert denied.code == 7 and denied.json()["receipt"]["code"] == "not_deployer"


VAULT = '''
def keep():
    emit("kept", {"value": attached_value(), "asset": attached_asset()})


def pull(owner, amount):
    pull_approved(owner, "CNY", amount)
    emit("pulled", {"left": allowance(owner, "CNY")})
'''


def test_wallet_attaches_value_to_a_call_and_approves_a_contract(shop: LocalNetwork, tmp_path) -> None:
    source = tmp_path / "vault.py"
    source.write_text(VAULT)
    address = sent(shop, "contract", "deploy", str(source), "--from", "developer")["contract"]
    kept = sent(shop, "contract", "call", address, "keep", "--value", "1.50", "--asset", "CNY", "--from", "alice")
    assert [event["name"] for event in kept["receipt"]["events"]] == ["transfer", "kept"]
    assert kept["receipt"]["events"][1]["data"] == {"value": 150, "asset": "CNY"}
    assert balance(shop, address) == 150
    alice = ok(shop, "balance", "alice")["address"]
    approved = sent(shop, "contract", "approve", address, "CNY", "2", "--from", "alice")
    assert approved["receipt"]["events"] == [{"name": "allowance_set", "account": alice, "contract": address,
                                              "asset": "CNY", "amount": 200}]
    pull = ["contract", "call", address, "pull", "--from", "bob", "--args"]
    pulled = sent(shop, *pull, f'[{{"address": "{alice}"}}, 150]')
    assert pulled["receipt"]["events"][-1]["data"] == {"left": 50} and balance(shop, address) == 300
    beyond = shop.wallet(*pull, f'[{{"address": "{alice}"}}, 51]', "--wait", "--json")
    assert beyond.code == 7 and beyond.json()["receipt"]["code"] == "allowance_exceeded"
    sent(shop, "contract", "approve", address, "CNY", "0", "--from", "alice")  # revoke
    revoked = shop.wallet(*pull, f'[{{"address": "{alice}"}}, 1]', "--wait", "--json")
    assert revoked.code == 7 and revoked.json()["receipt"]["code"] == "allowance_exceeded"
    helped = shop.wallet("contract", "approve", "--help")
    assert helped.code == 0 and "0 revokes" in " ".join(helped.stdout.split())
    lone = shop.wallet("contract", "call", address, "keep", "--value", "1", "--from", "alice", "--json")
    assert lone.code != 0 and "--value needs --asset" in lone.stdout + lone.stderr
