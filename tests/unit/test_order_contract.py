"""The system orders contract (node/contracts/system/orders.contract) on a real ledger.

Every flow of DESIGN §7 — buy → ship → confirm, cancel, refund approved and rejected,
auto-complete and expiry by `settle` — every bad input failing with its reason and moving
no money, and a Hypothesis state machine checking that money is conserved across balances,
escrow and fees, that no order is paid out twice and that final states stay final.
"""

from __future__ import annotations

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node import encoding, limits
from node.contracts import runtime, system
from node.orders import read_order
from node.state import KEY_ACCOUNT
from node.transactions import (CallContract, DeployContract, InvalidTransaction, Register, Role, SetMerchantStatus,
                               Transfer)
from tests.support import keys, make_chain, make_genesis, signer_for

FEE_BPS, CONFIRM_BLOCKS, SHIP_BLOCKS = 100, 3, 5
GAS = 100_000
CALL_FEE = 1 + GAS // limits.gas_per_fee_unit
USERS = {"alice": {"CNY": 1_000_000, "USD": 10_000}, "bob": {"CNY": 1_000_000}, "carol": {"CNY": 1_000}}
"""carol can pay a few call fees but not an order of two teas."""
FINAL = {"completed", "canceled", "refunded", "refund_rejected"}


class Shop:
    """A chain with the orders contract, a merchant "merchant", a second merchant "kiosk", and buyers."""

    def __init__(self) -> None:
        genesis = make_genesis(users=USERS, merchants=("merchant", "kiosk"), orders=(FEE_BPS, CONFIRM_BLOCKS,
                                                                                      SHIP_BLOCKS))
        self.chain = make_chain(genesis)
        self.sign = signer_for(genesis)
        self.contract = genesis.params.contract(system.ORDERS)
        self.nonces: dict[str, int] = {}
        self.supply = {asset: self.state().supply(asset) for asset in ("CNY", "USD")}

    def state(self):
        return self.chain.ledger.state()

    def send(self, name: str, body, fee: int = 1):
        nonce = self.nonces.get(name, 0)
        self.chain.submit(self.sign(name, nonce, body, fee=fee))
        self.nonces[name] = nonce + 1
        return self.chain.commit_pending().receipts[0]

    def call(self, name: str, function: str, *args, value: tuple[str, int] = ("", 0)):
        """Call `function` from `name`, attaching `value` (asset, amount)."""
        return self.send(name, CallContract(self.contract, function, encoding.encode_value(args), GAS, *value),
                         CALL_FEE)

    def query(self, function: str, *args):
        head = self.chain.ledger.head
        return runtime.call(self.state(), bytes(20), self.contract, function, encoding.encode_value(args),
                            limits.contract_query_gas_max, head.height, head.timestamp_ms, read_only=True).value

    def add_product(self, merchant: str = "merchant", product: str = "tea", price: int = 1_250, stock: int = 10,
                    limit: int = 3, currency: str = "CNY"):
        return self.call(merchant, "catalog_add", product, "Green tea", price, currency, stock, limit)

    def buy(self, buyer: str = "alice", quantity: int = 2, price: int = 1_250, product: str = "tea",
            merchant: str = "merchant", currency: str = "CNY", value: tuple[str, int] | None = None):
        """create_order, attaching the order's total (or `value`)."""
        value = value if value is not None else (currency, price * quantity) if price * quantity else ("", 0)
        receipt = self.call(buyer, "create_order", keys(merchant).address, product, quantity, price, currency,
                            value=value)
        created = [e for e in receipt.events if e.name == "order_created"]
        order_id = encoding.decode_value(created[0].fields[1], 1024)["order_id"] if created else None
        return receipt, order_id

    def order(self, order_id: bytes) -> dict:
        return read_order(self.state(), self.contract, order_id)

    def balance(self, name: str, asset: str = "CNY") -> int:
        return self.state().account(keys(name).address).balance_of(asset)

    def holdings(self) -> dict:
        """Every party's balances, the contract's and the escrow totals (what a failed call leaves as it was)."""
        state = self.state()
        names = ("alice", "bob", "carol", "merchant", "kiosk")
        held = {(name, asset): self.balance(name, asset) for name in names for asset in ("CNY", "USD")}
        held.update({("contract", asset): state.account(self.contract).balance_of(asset) for asset in ("CNY", "USD")})
        held.update({("escrow", asset): amount for asset, amount in state.escrowed().items()})
        return held

    def idle_blocks(self, count: int) -> None:
        for _ in range(count):
            self.send("bob", Transfer(keys("alice").address, "CNY", 1))

    def money_conserved(self) -> bool:
        state = self.state()
        escrow = state.escrowed()
        for asset, supply in self.supply.items():
            held = sum(r.balance_of(asset) for k, r in state.iter_records() if k[:1] == KEY_ACCOUNT)
            if held + escrow.get(asset, 0) != supply:
                return False
        return True


@pytest.fixture
def shop() -> Shop:
    shop = Shop()
    assert shop.add_product().success
    return shop


def test_buy_ship_confirm_pays_the_merchant_and_the_fee_account(shop):
    merchant_before, fees_before = shop.balance("merchant"), shop.state().account(keys("fees").address)
    receipt, order_id = shop.buy(quantity=2)
    assert receipt.success and shop.order(order_id)["state"] == "created"
    assert shop.state().escrowed() == {"CNY": 2_500}
    assert shop.query("catalog_get", keys("merchant").address, "tea")["stock"] == 8
    assert shop.call("merchant", "ship", order_id, "SF123").success
    assert shop.call("alice", "confirm", order_id).success
    assert shop.order(order_id)["state"] == "completed" and shop.state().escrowed() == {}
    fee = 2_500 * FEE_BPS // 10_000
    # the merchant paid three call fees (catalog_add happened before) …
    assert shop.balance("merchant") == merchant_before + 2_500 - fee - CALL_FEE
    assert shop.state().account(keys("fees").address).balance_of("CNY") > fees_before.balance_of("CNY") + fee
    assert shop.money_conserved()


def test_cancel_before_shipping_refunds_the_buyer_and_restores_stock(shop):
    before = shop.balance("alice")
    _, order_id = shop.buy(quantity=3)
    assert shop.call("merchant", "cancel", order_id).success
    assert shop.order(order_id)["state"] == "canceled"
    assert shop.balance("alice") == before - CALL_FEE
    assert shop.query("catalog_get", keys("merchant").address, "tea")["stock"] == 10


def test_refund_approved_returns_the_escrow(shop):
    before = shop.balance("alice")
    _, order_id = shop.buy()
    shop.call("merchant", "ship", order_id, "SF1")
    assert shop.call("alice", "request_refund", order_id, "arrived broken").success
    assert shop.call("merchant", "approve_refund", order_id).success
    assert shop.order(order_id)["state"] == "refunded"
    assert shop.balance("alice") == before - 2 * CALL_FEE and shop.money_conserved()


def test_merchant_refund_of_a_shipped_order_returns_the_escrow(shop):
    before = shop.balance("alice")
    _, order_id = shop.buy()
    shop.call("merchant", "ship", order_id, "SF1")
    assert shop.call("merchant", "refund", order_id, "out of stock after all").success
    order = shop.order(order_id)
    assert order["state"] == "refunded" and order["refund_reason"] == "out of stock after all"
    assert shop.balance("alice") == before - CALL_FEE and shop.money_conserved()


def test_invalid_merchant_refund(shop):
    _, order_id = shop.buy()
    refused = shop.call("merchant", "refund", order_id, "x")
    assert not refused.success and "only a shipped order is refunded" in refused.message
    shop.call("merchant", "ship", order_id, "SF1")
    by_buyer = shop.call("alice", "refund", order_id, "x")
    assert not by_buyer.success and "only the merchant may refund" in by_buyer.message


def test_refund_rejected_pays_the_merchant(shop):
    _, order_id = shop.buy()
    shop.call("merchant", "ship", order_id, "SF1")
    shop.call("alice", "request_refund", order_id, "changed my mind")
    assert shop.call("merchant", "reject_refund", order_id, "delivered as described").success
    order = shop.order(order_id)
    assert order["state"] == "refund_rejected" and "delivered as described" in order["refund_reason"]
    assert shop.state().escrowed() == {} and shop.money_conserved()


def test_settle_completes_after_the_confirmation_window_and_expires_unshipped_orders(shop):
    _, shipped = shop.buy()
    _, unshipped = shop.buy(quantity=1)
    shop.call("merchant", "ship", shipped, "SF1")
    early = shop.call("carol", "settle", shipped)
    assert not early.success and "deadline has not passed" in early.message
    shop.idle_blocks(SHIP_BLOCKS)
    assert shop.call("carol", "settle", shipped).success
    assert shop.call("carol", "settle", unshipped).success
    assert shop.order(shipped)["state"] == "completed" and shop.order(unshipped)["state"] == "canceled"
    assert shop.state().escrowed() == {} and shop.money_conserved()


@pytest.mark.parametrize("change, message", [
    ({"merchant": "bob"}, "not an active registered merchant"),
    ({"price": 1_000}, "does not match the catalog price"),
    ({"product": "coffee"}, "does not sell product coffee"),
    ({"quantity": 0}, "quantity must be an integer from 1 to 3"),
    ({"quantity": 4}, "quantity must be an integer from 1 to 3"),
    ({"currency": "USD"}, "does not match the catalog currency"),
    ({"value": ("CNY", 2_499)}, "attach exactly the order total, 2500 CNY, to create_order (attached 2499 CNY)"),
    ({"value": ("CNY", 2_501)}, "attach exactly the order total, 2500 CNY, to create_order (attached 2501 CNY)"),
    ({"value": ("USD", 2_500)}, "attach exactly the order total, 2500 CNY, to create_order (attached 2500 USD)"),
    ({"value": ("", 0)}, "attach exactly the order total, 2500 CNY, to create_order (attached nothing)"),
])
def test_invalid_order_fails_with_its_reason_and_moves_no_money(shop, change, message):
    before = shop.holdings()
    args = {"quantity": 2, "price": 1_250, "product": "tea", "merchant": "merchant", "currency": "CNY"}
    args.update(change)
    receipt, order_id = shop.buy(**args)
    assert not receipt.success and order_id is None
    assert message in receipt.message or message == receipt.code
    assert shop.holdings() == {**before, ("alice", "CNY"): before[("alice", "CNY")] - CALL_FEE}
    assert shop.state().escrowed() == {}


def test_invalid_order_attaching_more_than_the_buyer_holds_is_refused_before_the_chain():
    shop = Shop()
    assert shop.add_product().success
    with pytest.raises(InvalidTransaction) as caught:
        shop.buy("carol")  # carol holds 1,000 CNY, the order is 2,500
    assert caught.value.code == "insufficient_funds"


def test_invalid_value_attached_to_a_function_that_takes_none(shop):
    _, order_id = shop.buy()
    before = shop.holdings()
    receipt = shop.call("merchant", "ship", order_id, "SF1", value=("CNY", 10))
    assert not receipt.success and "takes no attached value" in receipt.message
    assert shop.holdings() == {**before, ("merchant", "CNY"): before[("merchant", "CNY")] - CALL_FEE}
    assert shop.order(order_id)["state"] == "created"


def test_create_order_fits_the_wallet_and_gateway_gas_limits(shop):
    from gateway import chain as gateway_chain
    from wallet_cli import orders as wallet_orders
    receipt, _ = shop.buy()
    assert receipt.success
    for limit in (wallet_orders.ORDER_GAS, gateway_chain.ORDER_GAS):
        assert 2 * receipt.gas_used < limit, (receipt.gas_used, limit)


def test_invalid_order_to_a_suspended_merchant(shop):
    assert shop.send("gateway", SetMerchantStatus(keys("merchant").address, False, "KYC expired")).success
    receipt, _ = shop.buy()
    assert not receipt.success and "not an active registered merchant" in receipt.message
    assert shop.send("gateway", SetMerchantStatus(keys("merchant").address, True, "")).success
    assert shop.buy()[0].success


def test_invalid_catalog_changes(shop):
    not_merchant = shop.call("alice", "catalog_add", "x", "X", 1, "CNY", 1, 1)
    assert not not_merchant.success and "active registered merchant" in not_merchant.message
    twice = shop.add_product()
    assert not twice.success and "already in the catalog" in twice.message
    unknown_asset = shop.add_product(product="gold", currency="XAU")
    assert not unknown_asset.success and unknown_asset.code == "bad_argument"


@pytest.mark.parametrize("actor, function, extra, message", [
    ("bob", "ship", ("SF1",), "only the order's merchant may ship"),
    ("kiosk", "ship", ("SF1",), "only the order's merchant may ship"),
    ("merchant", "confirm", (), "only the buyer may confirm"),
    ("alice", "confirm", (), "not shipped"),
    ("bob", "cancel", (), "only the buyer or the merchant may cancel"),
    ("alice", "approve_refund", (), "only the merchant may approve"),
    ("merchant", "approve_refund", (), "no refund was requested"),
])
def test_invalid_order_transition_fails_with_its_reason(shop, actor, function, extra, message):
    _, order_id = shop.buy()
    escrow = shop.state().escrowed()
    receipt = shop.call(actor, function, order_id, *extra)
    assert not receipt.success and message in receipt.message
    assert shop.state().escrowed() == escrow and shop.order(order_id)["state"] == "created"


def test_invalid_double_refund_and_cancel_after_shipping(shop):
    _, order_id = shop.buy()
    shop.call("merchant", "ship", order_id, "SF1")
    cancel = shop.call("alice", "cancel", order_id)
    assert not cancel.success and "only an order not yet shipped" in cancel.message
    shop.call("alice", "request_refund", order_id, "broken")
    assert shop.call("merchant", "approve_refund", order_id).success
    again = shop.call("merchant", "approve_refund", order_id)
    assert not again.success and "no refund was requested" in again.message
    assert shop.money_conserved()


class OrderLifecycle(RuleBasedStateMachine):
    """Random buyers and merchants driving orders; money and finality checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.shop = Shop()
        self.shop.add_product("merchant", "tea", 300, 1_000, 5)
        self.shop.add_product("kiosk", "map", 70, 1_000, 5)
        self.orders: list[bytes] = []
        self.final: dict[bytes, str] = {}
        self.payouts: dict[bytes, int] = {}

    @rule(buyer=st.sampled_from(["alice", "bob", "carol"]), seller=st.sampled_from([("merchant", "tea", 300),
                                                                                   ("kiosk", "map", 70)]),
          quantity=st.integers(0, 6))
    def buy(self, buyer, seller, quantity):
        merchant, product, price = seller
        try:
            receipt, order_id = self.shop.buy(buyer, quantity, price, product, merchant)
        except InvalidTransaction as error:
            assert error.code == "insufficient_funds"
            return
        if order_id is not None:
            self.orders.append(order_id)

    @precondition(lambda self: self.orders)
    @rule(pick=st.integers(0, 10**6), actor=st.sampled_from(["alice", "bob", "carol", "merchant", "kiosk"]),
          action=st.sampled_from(["ship", "confirm", "cancel", "request_refund", "approve_refund", "reject_refund",
                                  "refund", "settle"]))
    def act(self, pick, actor, action):
        order_id = self.orders[pick % len(self.orders)]
        args = {"ship": ("SF",), "request_refund": ("why",), "reject_refund": ("no",), "refund": ("sorry",)}.get(action, ())
        try:
            receipt = self.shop.call(actor, action, order_id, *args)
        except InvalidTransaction as error:
            assert error.code == "insufficient_funds"  # the actor cannot pay the fee any more: nothing happens
            return
        for event in receipt.events:
            if event.name == "escrow_released" and encoding.decode_uint_be(event.fields[3]):
                to = event.fields[1]
                if to != keys("fees").address:
                    self.payouts[order_id] = self.payouts.get(order_id, 0) + 1

    @rule()
    def time_passes(self):
        self.shop.idle_blocks(2)

    @invariant()
    def money_is_conserved(self):
        assert self.shop.money_conserved()

    @invariant()
    def no_order_is_paid_out_twice_and_final_states_stay_final(self):
        assert all(count == 1 for count in self.payouts.values())
        for order_id in self.orders:
            state = self.shop.order(order_id)["state"]
            if order_id in self.final:
                assert state == self.final[order_id], "a final state changed"
            elif state in FINAL:
                self.final[order_id] = state


TestOrderLifecycle = OrderLifecycle.TestCase
TestOrderLifecycle.settings = settings(max_examples=15, stateful_step_count=20, deadline=None)


def test_a_merchant_registered_by_a_gateway_can_sell():
    shop = Shop()
    dora = keys("dora").address
    assert shop.send("gateway", Register(dora, int(Role.MERCHANT), b"\x02" * 32)).success
    assert shop.send("bob", Transfer(dora, "CNY", 10_000)).success
    assert shop.add_product("dora", "pie", 500, 5, 2).success
    receipt, order_id = shop.buy("alice", 1, 500, "pie", "dora")
    assert receipt.success and shop.order(order_id)["merchant"] == dora


def test_an_unanswered_refund_request_is_refunded_by_settle(shop):
    before = shop.balance("alice")
    _, order_id = shop.buy()
    shop.call("merchant", "ship", order_id, "SF1")
    shop.call("alice", "request_refund", order_id, "never arrived")
    early = shop.call("carol", "settle", order_id)
    assert not early.success and "deadline has not passed" in early.message
    shop.idle_blocks(CONFIRM_BLOCKS)
    assert shop.call("carol", "settle", order_id).success
    assert shop.order(order_id)["state"] == "refunded" and shop.state().escrowed() == {}
    # alice paid two call fees and the idle blocks paid her 1 each
    assert shop.balance("alice") == before - 2 * CALL_FEE + CONFIRM_BLOCKS and shop.money_conserved()


def test_invalid_event_name_of_the_ledger_itself():
    from node.contracts import runtime
    genesis = make_genesis(deployers=("alice",))
    chain = make_chain(genesis)
    source = 'def fake():\n    emit("transfer", {"amount": 1})\n'
    chain.submit(signer_for(genesis)("alice", 0, DeployContract(source, encoding.encode_value(()), 100_000, "", 0),
                                                     fee=101))
    deployed = chain.commit_pending()
    address = deployed.receipts[0].events[0].fields[0]
    head = chain.ledger.head
    with pytest.raises(runtime.ContractFailed) as caught:
        runtime.call(chain.ledger.state(), bytes(20), address, "fake", encoding.encode_value(()), 100_000,
                     head.height, head.timestamp_ms, read_only=False)
    assert caught.value.code == "reserved_event_name"
