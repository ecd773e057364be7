"""The system cross-border contract (node/contracts/system/crossborder.contract) on a real ledger.

Every flow of DESIGN §7's cross-border payment — a gateway's signed quote, the payer's funds in
escrow, execution when M of (payer, merchant, gateway) approve, reject, cancel and expiry — every
bad quote or transition failing with its reason and moving no money, a Hypothesis state machine
checking that money is conserved and that escrow holds exactly the open payments and the
liquidity, and the wallet's `paywallet multisig quote` signing a quote the contract accepts.
"""

from __future__ import annotations

import json

import nacl.pwhash
import pytest
from click.testing import CliRunner
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node import crypto, encoding
from node.contracts import system
from node.transactions import InvalidTransaction, SetMerchantStatus
from tests.support import ASSETS, CHAIN_ID, keys, make_chain, make_genesis, other_network, signer_for
from tests.unit.test_order_contract import CALL_FEE, Shop
from wallet_cli.main import main as paywallet  # first: importing main adds --json to the commands it imports
from wallet_cli import multisig
from wallet_cli.keystore import FLOOR_KDF, Keystore
from wallet_cli.rpc_client import RpcClient

QUOTE_BLOCKS_MAX = 50
USERS = {"alice": {"CNY": 1_000_000, "USD": 10_000}, "bob": {"CNY": 1_000_000}}
PAY, SETTLE, LIQUIDITY = 10_000, 1_400, 5_000
"""100.00 CNY for 14.00 USD; the gateway holds 50.00 USD of liquidity."""
FINAL = {"executed", "rejected", "canceled", "expired"}


class Exchange(Shop):
    """A chain with the cross-border contract, a merchant, a second merchant "kiosk", gateways "gateway" and
    "gateway2", and payers alice and bob. Fees are paid in CNY, so USD moves only by the contract.

    Shop's helpers (send, call, query, balance, idle_blocks, money_conserved) serve it as they are; only the
    genesis differs."""

    def __init__(self, approvals_required: int = 2) -> None:  # not Shop's: that one deploys the orders contract
        genesis = make_genesis(users=USERS, merchants=("merchant", "kiosk"), gateways=("gateway", "gateway2"),
                               crossborder=(approvals_required, QUOTE_BLOCKS_MAX))
        self.chain = make_chain(genesis)
        self.domain = genesis.signing_domain
        self.sign = signer_for(genesis)
        self.contract = genesis.params.contract(system.CROSSBORDER)
        self.nonces: dict[str, int] = {}
        self.quotes = 0
        self.supply = {asset: self.state().supply(asset) for asset in ("CNY", "USD")}

    def next_height(self) -> int:
        return self.chain.ledger.head.height + 1

    def quote(self, pay: int = PAY, settle: int = SETTLE, valid_blocks: int = 20, quote_id=None,
              pay_asset: str = "CNY", settle_asset: str = "USD") -> dict:
        """A quote that expires `valid_blocks` after the block the next transaction lands in."""
        if quote_id is None:
            self.quotes += 1
            quote_id = f"q{self.quotes}"
        return multisig.make_quote(pay_asset, pay, settle_asset, settle, self.next_height() + valid_blocks, quote_id)

    def propose(self, payer: str = "alice", merchant: str = "merchant", gateway: str = "gateway", quote=None,
                signer: str | None = None, public_key: bytes | None = None, signature: bytes | None = None,
                value: tuple[str, int] | None = None):
        """Propose with `quote` signed by `signer` (default: the gateway), attaching the quote's pay amount (or
        `value`); the receipt and the new proposal's id."""
        quote = quote if quote is not None else self.quote()
        signed = multisig.sign_quote(keys(signer or gateway), self.domain, quote)  # its public key is the signer's
        value = value if value is not None else (quote["pay_asset"], quote["pay_amount"])
        receipt = self.call(payer, "propose", keys(merchant).address, keys(gateway).address,
                            public_key or signed.public_key, quote, signature or signed.signature, value=value)
        proposed = [e for e in receipt.events if e.name == "crossborder_proposed"]
        proposal_id = encoding.decode_value(proposed[0].fields[1], 4096)["proposal_id"] if proposed else None
        return receipt, proposal_id

    def deposit(self, amount: int = LIQUIDITY, gateway: str = "gateway", asset: str = "USD"):
        return self.call(gateway, "deposit", asset, amount, value=(asset, amount))

    def proposal(self, proposal_id: bytes) -> dict:
        return self.query("get_proposal", proposal_id)

    def liquidity(self, gateway: str = "gateway", asset: str = "USD") -> int:
        return self.query("liquidity_of", keys(gateway).address, asset)

    def holdings(self) -> dict:
        """Every party's balances and the escrow totals: what a failed call must leave as it was (but fees)."""
        names = ("alice", "bob", "merchant", "kiosk", "gateway", "gateway2")
        held = {(name, asset): self.balance(name, asset) for name in names for asset in ("CNY", "USD")}
        held.update({("escrow", asset): amount for asset, amount in self.state().escrowed().items()})
        return held


def receipt_height(exchange: Exchange) -> int:
    """The height of the last committed block (the one the last receipt came from)."""
    return exchange.chain.ledger.head.height


def moved_nothing_but_the_fee(before: dict, after: dict, payer_of_fee: str) -> bool:
    expected = dict(before)
    expected[(payer_of_fee, "CNY")] -= CALL_FEE
    return after == expected


@pytest.fixture
def exchange() -> Exchange:
    exchange = Exchange()
    assert exchange.deposit().success
    return exchange


# --- flows --------------------------------------------------------------------------------------

def test_two_of_three_payer_and_merchant_execute_the_payment(exchange):
    before = exchange.holdings()
    receipt, proposal_id = exchange.propose()
    assert receipt.success and exchange.proposal(proposal_id)["state"] == "proposed"
    assert exchange.state().escrowed() == {"CNY": PAY, "USD": LIQUIDITY}
    assert exchange.call("merchant", "approve", proposal_id).success
    assert exchange.proposal(proposal_id)["state"] == "executed"
    after = exchange.holdings()
    assert after[("alice", "CNY")] == before[("alice", "CNY")] - PAY - CALL_FEE
    assert after[("alice", "USD")] == before[("alice", "USD")]
    assert after[("merchant", "USD")] == before[("merchant", "USD")] + SETTLE
    assert after[("merchant", "CNY")] == before[("merchant", "CNY")] - CALL_FEE
    assert after[("gateway", "CNY")] == before[("gateway", "CNY")] + PAY
    assert exchange.liquidity() == LIQUIDITY - SETTLE
    assert exchange.state().escrowed() == {"USD": LIQUIDITY - SETTLE} and exchange.money_conserved()


def test_two_of_three_the_gateway_may_be_the_second_approver(exchange):
    _, proposal_id = exchange.propose()
    assert exchange.call("gateway", "approve", proposal_id).success
    proposal = exchange.proposal(proposal_id)
    assert proposal["state"] == "executed" and proposal["approvals"] == [keys("alice").address,
                                                                         keys("gateway").address]
    assert exchange.balance("merchant", "USD") == SETTLE and exchange.money_conserved()


def test_three_of_three_needs_every_party():
    exchange = Exchange(approvals_required=3)
    assert exchange.deposit().success
    _, proposal_id = exchange.propose()
    assert exchange.call("merchant", "approve", proposal_id).success
    proposal = exchange.proposal(proposal_id)
    assert proposal["state"] == "proposed" and len(proposal["approvals"]) == 2
    assert exchange.balance("merchant", "USD") == 0 and exchange.liquidity() == LIQUIDITY
    assert exchange.call("gateway", "approve", proposal_id).success
    assert exchange.proposal(proposal_id)["state"] == "executed"
    assert exchange.balance("merchant", "USD") == SETTLE and exchange.money_conserved()


def test_every_transition_emits_its_event(exchange):
    def names(receipt):
        assert receipt.success, receipt.message
        return [event.name for event in receipt.events]

    proposed, executed = exchange.propose()
    assert names(proposed) == ["transfer", "escrow_held", "crossborder_proposed"]  # the attached value, then
    assert names(exchange.call("merchant", "approve", executed)) == [
        "crossborder_approved", "escrow_released", "escrow_released", "crossborder_executed"]
    for actor, function, event in (("gateway", "reject", "crossborder_rejected"),
                                   ("alice", "cancel", "crossborder_canceled")):
        assert names(exchange.call(actor, function, exchange.propose()[1])) == ["escrow_refunded", event]
    _, expiring = exchange.propose(quote=exchange.quote(valid_blocks=1))
    assert names(exchange.call("bob", "expire", expiring)) == ["escrow_refunded", "crossborder_expired"]
    assert names(exchange.deposit(1)) == ["transfer", "escrow_held", "liquidity_deposited"]
    assert names(exchange.call("gateway", "withdraw_liquidity", "USD", 1)) == ["escrow_released",
                                                                               "liquidity_withdrawn"]


def test_reject_by_the_merchant_or_the_gateway_refunds_the_payer(exchange):
    before = exchange.balance("alice")
    _, by_merchant = exchange.propose()
    _, by_gateway = exchange.propose()
    assert exchange.call("merchant", "reject", by_merchant).success
    assert exchange.call("gateway", "reject", by_gateway).success
    assert exchange.proposal(by_merchant)["state"] == exchange.proposal(by_gateway)["state"] == "rejected"
    assert exchange.balance("alice") == before - 2 * CALL_FEE
    assert exchange.state().escrowed() == {"USD": LIQUIDITY} and exchange.money_conserved()


def test_cancel_by_the_payer_refunds_it(exchange):
    before = exchange.balance("alice")
    _, proposal_id = exchange.propose()
    assert exchange.call("alice", "cancel", proposal_id).success
    assert exchange.proposal(proposal_id)["state"] == "canceled"
    assert exchange.balance("alice") == before - 2 * CALL_FEE and exchange.money_conserved()


def test_expire_refunds_the_payer_once_the_quote_expired(exchange):
    _, proposal_id = exchange.propose(quote=exchange.quote(valid_blocks=3))
    early = exchange.call("bob", "expire", proposal_id)
    assert not early.success and "has not expired" in early.message
    exchange.idle_blocks(1)
    before = exchange.balance("alice")
    assert exchange.call("bob", "expire", proposal_id).success  # anyone may; this lands at expires_height
    assert exchange.proposal(proposal_id)["state"] == "expired"
    assert exchange.balance("alice") == before + PAY and exchange.state().escrowed() == {"USD": LIQUIDITY}


def test_liquidity_deposit_top_up_and_withdrawal(exchange):
    before = exchange.balance("gateway", "USD")
    assert exchange.deposit(1_000).success and exchange.liquidity() == LIQUIDITY + 1_000
    assert exchange.call("gateway", "withdraw_liquidity", "USD", 2_500).success
    assert exchange.liquidity() == LIQUIDITY - 1_500
    assert exchange.balance("gateway", "USD") == before - 1_000 + 2_500
    assert exchange.call("gateway", "withdraw_liquidity", "USD", LIQUIDITY - 1_500).success
    assert exchange.liquidity() == 0 and exchange.state().escrowed() == {} and exchange.money_conserved()


def test_propose_and_approve_fit_the_wallet_gas_limit(exchange):
    receipt, proposal_id = exchange.propose()
    approved = exchange.call("merchant", "approve", proposal_id)
    gas = multisig.CROSSBORDER_GAS
    assert 2 * receipt.gas_used < gas and 2 * approved.gas_used < gas, (receipt.gas_used, approved.gas_used)


def test_the_proposal_id_is_known_from_the_quote(exchange):
    quote = exchange.quote(quote_id=b"\x01\x02")
    _, proposal_id = exchange.propose(quote=quote)
    assert proposal_id == multisig.proposal_id_of(keys("gateway").address, b"\x01\x02")


# --- invalid proposals --------------------------------------------------------------------------

def _forged(exchange):
    signature = multisig.sign_quote(keys("bob"), exchange.domain, exchange.quote()).signature
    return exchange.propose(signature=signature)


def _signed_by_another_gateway(exchange):
    return exchange.propose(signer="gateway2", public_key=keys("gateway").public_key)


def _signed_by_another_gateway_with_its_own_key(exchange):
    return exchange.propose(signer="gateway2")


def _tampered(exchange):
    quote = exchange.quote()
    signature = multisig.sign_quote(keys("gateway"), exchange.domain, quote).signature
    quote["settle_amount"] = SETTLE * 2
    return exchange.propose(quote=quote, signature=signature)


def _other_chain(exchange):
    quote = exchange.quote()
    other_chain = crypto.SigningDomain("other", exchange.domain.genesis_hash)
    return exchange.propose(quote=quote, signature=multisig.sign_quote(keys("gateway"), other_chain, quote).signature)


def _other_genesis_with_the_same_chain_id(exchange):
    quote = exchange.quote()
    signature = multisig.sign_quote(keys("gateway"), other_network(exchange.domain), quote).signature
    return exchange.propose(quote=quote, signature=signature)


@pytest.mark.parametrize("attempt, message", [
    (_forged, "the quote's signature is not the gateway's"),
    (_tampered, "the quote's signature is not the gateway's"),
    (_other_chain, "the quote's signature is not the gateway's"),
    (_other_genesis_with_the_same_chain_id, "the quote's signature is not the gateway's"),
    (_signed_by_another_gateway, "the quote's signature is not the gateway's"),
    (_signed_by_another_gateway_with_its_own_key, "gateway_public_key is not the key of the gateway's account"),
    (lambda ex: ex.propose(quote=ex.quote(valid_blocks=0)), "the quote expired at height"),
    (lambda ex: ex.propose(quote=ex.quote(valid_blocks=-1)), "the quote expired at height"),
    (lambda ex: ex.propose(quote=ex.quote(valid_blocks=QUOTE_BLOCKS_MAX + 1)),
     "the quote is valid for 51 blocks, more than the 50 allowed"),
    (lambda ex: ex.propose(merchant="bob"), "the payee is not an active registered merchant"),
    (lambda ex: ex.propose(gateway="bob"), "the quoting account is not a registered gateway"),
    (lambda ex: ex.propose(quote=ex.quote(settle_asset="CNY")), "two different assets"),
    (lambda ex: ex.propose(quote=ex.quote(settle=0)), "settle_amount must be an integer from 1"),
    (lambda ex: ex.propose(quote=ex.quote(quote_id="")), "quote_id must be 1 to 64"),
    (lambda ex: ex.propose(quote={**ex.quote(), "rate": 14}), "the quote must be a dict of exactly"),
    (lambda ex: ex.propose(quote=ex.quote(settle_asset="XAU")), "bad_argument"),
    (lambda ex: ex.propose(value=("CNY", PAY - 1)), f"attach exactly {PAY} CNY to propose (attached {PAY - 1} CNY)"),
    (lambda ex: ex.propose(value=("USD", PAY)), f"attach exactly {PAY} CNY to propose (attached {PAY} USD)"),
    (lambda ex: ex.propose(value=("", 0)), f"attach exactly {PAY} CNY to propose (attached nothing)"),
])
def test_invalid_proposal_fails_with_its_reason_and_moves_no_money(exchange, attempt, message):
    before = exchange.holdings()
    receipt, proposal_id = attempt(exchange)
    assert not receipt.success and proposal_id is None
    assert message in receipt.message or message == receipt.code, (receipt.code, receipt.message)
    assert moved_nothing_but_the_fee(before, exchange.holdings(), "alice")


def test_invalid_proposal_attaching_more_than_the_payer_holds_is_refused_before_the_chain(exchange):
    with pytest.raises(InvalidTransaction) as caught:
        exchange.propose(quote=exchange.quote(pay=2_000_000))
    assert caught.value.code == "insufficient_funds"


def test_invalid_deposit_without_exactly_the_amount_attached(exchange):
    before = exchange.holdings()
    for value, attached in ((("USD", 99), "99 USD"), (("CNY", 100), "100 CNY"), (("", 0), "nothing")):
        receipt = exchange.call("gateway", "deposit", "USD", 100, value=value)
        assert not receipt.success and receipt.message == f"attach exactly 100 USD to deposit (attached {attached})"
    expected = {**before, ("gateway", "CNY"): before[("gateway", "CNY")] - 3 * CALL_FEE}
    assert exchange.holdings() == expected and exchange.liquidity() == LIQUIDITY


def test_a_quote_valid_for_exactly_quote_blocks_max_is_accepted(exchange):
    receipt, proposal_id = exchange.propose(quote=exchange.quote(valid_blocks=QUOTE_BLOCKS_MAX))
    assert receipt.success and exchange.proposal(proposal_id)["expires_height"] == receipt_height(exchange) + 50


def test_invalid_reused_quote_id(exchange):
    assert exchange.propose(quote=exchange.quote(quote_id="once"))[0].success
    before = exchange.holdings()
    receipt, _ = exchange.propose(quote=exchange.quote(quote_id="once", pay=1))
    assert not receipt.success and receipt.message == "quote once was already used"
    assert moved_nothing_but_the_fee(before, exchange.holdings(), "alice")
    assert exchange.propose(gateway="gateway2", quote=exchange.quote(quote_id="once"))[0].success  # ids are per gateway


def test_invalid_payer_that_is_a_party_already_but_a_merchant_may_pay_another(exchange):
    before = exchange.holdings()
    receipt, _ = exchange.propose(payer="merchant", quote=exchange.quote(pay=100))
    assert not receipt.success and "three different accounts" in receipt.message
    assert moved_nothing_but_the_fee(before, exchange.holdings(), "merchant")
    assert exchange.propose(payer="merchant", merchant="kiosk", quote=exchange.quote(pay=100))[0].success


def test_invalid_payee_suspended_before_proposing_or_before_execution(exchange):
    _, proposal_id = exchange.propose()
    assert exchange.send("gateway", SetMerchantStatus(keys("merchant").address, False, "KYC expired")).success
    receipt, _ = exchange.propose()
    assert not receipt.success and "not an active registered merchant" in receipt.message
    before = exchange.holdings()
    approved = exchange.call("gateway", "approve", proposal_id)
    assert not approved.success and "the merchant was suspended" in approved.message
    assert moved_nothing_but_the_fee(before, exchange.holdings(), "gateway")
    assert exchange.call("gateway", "reject", proposal_id).success  # the payer gets its money back
    assert exchange.proposal(proposal_id)["state"] == "rejected"


# --- invalid transitions ------------------------------------------------------------------------

def test_invalid_approve_twice_and_by_the_payer_who_proposed():
    exchange = Exchange(approvals_required=3)
    _, proposal_id = exchange.propose()
    payer_again = exchange.call("alice", "approve", proposal_id)
    assert not payer_again.success and payer_again.message == "already approved by this party"
    assert exchange.call("merchant", "approve", proposal_id).success
    twice = exchange.call("merchant", "approve", proposal_id)
    assert not twice.success and twice.message == "already approved by this party"
    assert len(exchange.proposal(proposal_id)["approvals"]) == 2


def test_invalid_approve_after_expiry(exchange):
    _, proposal_id = exchange.propose(quote=exchange.quote(valid_blocks=2))
    exchange.idle_blocks(1)
    late = exchange.call("merchant", "approve", proposal_id)
    assert not late.success and "expired at height" in late.message and "no longer be approved" in late.message
    assert exchange.proposal(proposal_id)["state"] == "proposed" and exchange.balance("merchant", "USD") == 0


def test_invalid_approve_without_enough_liquidity_moves_nothing_until_the_gateway_deposits():
    exchange = Exchange()
    assert exchange.deposit(SETTLE - 1).success
    _, proposal_id = exchange.propose()
    before = exchange.holdings()
    short = exchange.call("merchant", "approve", proposal_id)
    assert not short.success
    assert short.message == f"the gateway's USD liquidity is {SETTLE - 1}, less than the settle amount {SETTLE}"
    assert moved_nothing_but_the_fee(before, exchange.holdings(), "merchant")
    assert exchange.proposal(proposal_id)["approvals"] == [keys("alice").address]  # the approval was undone too
    assert exchange.deposit(1).success
    assert exchange.call("merchant", "approve", proposal_id).success
    assert exchange.liquidity() == 0 and exchange.balance("merchant", "USD") == SETTLE


@pytest.mark.parametrize("actor, function, message", [
    ("bob", "approve", "only the payer, the merchant or the gateway of this payment may approve it"),
    ("kiosk", "approve", "only the payer, the merchant or the gateway of this payment may approve it"),
    ("gateway2", "approve", "only the payer, the merchant or the gateway of this payment may approve it"),
    ("alice", "reject", "only the merchant or the gateway may reject"),
    ("bob", "reject", "only the merchant or the gateway may reject"),
    ("merchant", "cancel", "only the payer may cancel"),
    ("gateway", "cancel", "only the payer may cancel"),
])
def test_invalid_transition_by_the_wrong_party(exchange, actor, function, message):
    _, proposal_id = exchange.propose()
    before = exchange.holdings()
    receipt = exchange.call(actor, function, proposal_id)
    assert not receipt.success and message in receipt.message
    assert moved_nothing_but_the_fee(before, exchange.holdings(), actor)
    assert exchange.proposal(proposal_id)["state"] == "proposed"


@pytest.mark.parametrize("actor, function", [("gateway", "approve"), ("merchant", "reject"), ("alice", "cancel"),
                                             ("bob", "expire")])
def test_invalid_transition_of_a_final_payment(exchange, actor, function):
    _, proposal_id = exchange.propose(quote=exchange.quote(valid_blocks=2))
    assert exchange.call("merchant", "approve", proposal_id).success  # the next call is at expires_height
    receipt = exchange.call(actor, function, proposal_id)
    assert not receipt.success and "the payment is executed, no longer proposed" in receipt.message


def test_invalid_unknown_proposal_and_liquidity_rules(exchange):
    unknown = exchange.call("merchant", "approve", bytes(32))
    assert not unknown.success and unknown.message == "no such proposal"
    not_gateway = exchange.call("alice", "deposit", "USD", 100)
    assert not not_gateway.success and "the depositor is not a registered gateway" in not_gateway.message
    too_much = exchange.call("gateway", "withdraw_liquidity", "USD", LIQUIDITY + 1)
    assert not too_much.success and too_much.message == f"your USD liquidity is {LIQUIDITY}, less than {LIQUIDITY + 1}"
    nothing = exchange.call("gateway2", "withdraw_liquidity", "USD", 1)
    assert not nothing.success and "liquidity is 0" in nothing.message
    assert exchange.liquidity() == LIQUIDITY and exchange.money_conserved()


# --- invariants ---------------------------------------------------------------------------------

class CrossBorderLifecycle(RuleBasedStateMachine):
    """Random payers, quotes, approvals and closings; money, escrow contents and finality checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.exchange = Exchange()
        self.proposals: list[bytes] = []
        self.final: dict[bytes, str] = {}

    @rule(payer=st.sampled_from(["alice", "bob"]), gateway=st.sampled_from(["gateway", "gateway2"]),
          pay=st.integers(1, 20_000), settle=st.integers(1, 3_000), valid_blocks=st.integers(1, 6),
          reuse=st.booleans())
    def propose(self, payer, gateway, pay, settle, valid_blocks, reuse):
        quote_id = "same" if reuse else None
        quote = self.exchange.quote(pay, settle, valid_blocks, quote_id)
        receipt, proposal_id = self.exchange.propose(payer, gateway=gateway, quote=quote)
        if proposal_id is not None:
            self.proposals.append(proposal_id)

    @precondition(lambda self: self.proposals)
    @rule(pick=st.integers(0, 10**6), actor=st.sampled_from(["alice", "bob", "merchant", "gateway", "gateway2"]),
          action=st.sampled_from(["approve", "reject", "cancel", "expire"]))
    def act(self, pick, actor, action):
        try:
            self.exchange.call(actor, action, self.proposals[pick % len(self.proposals)])
        except InvalidTransaction as error:
            assert error.code == "insufficient_funds"  # the actor cannot pay the fee any more: nothing happens

    @rule(gateway=st.sampled_from(["gateway", "gateway2"]), amount=st.integers(1, 3_000), back=st.booleans())
    def liquidity(self, gateway, amount, back):
        try:
            if back:
                self.exchange.call(gateway, "withdraw_liquidity", "USD", amount)
            else:
                self.exchange.deposit(amount, gateway)
        except InvalidTransaction as error:
            assert error.code == "insufficient_funds"  # the gateway does not hold what it would attach

    @rule()
    def time_passes(self):
        self.exchange.idle_blocks(2)

    @invariant()
    def money_is_conserved(self):
        assert self.exchange.money_conserved()

    @invariant()
    def escrow_holds_the_open_payments_and_the_liquidity(self):
        open_pay = sum(p["pay_amount"] for p in map(self.exchange.proposal, self.proposals) if p["state"] == "proposed")
        liquidity = sum(self.exchange.liquidity(g) for g in ("gateway", "gateway2"))
        escrowed = self.exchange.state().escrowed()
        assert escrowed.get("CNY", 0) == open_pay and escrowed.get("USD", 0) == liquidity

    @invariant()
    def final_states_stay_final(self):
        for proposal_id in self.proposals:
            state = self.exchange.proposal(proposal_id)["state"]
            if proposal_id in self.final:
                assert state == self.final[proposal_id], "a final state changed"
            elif state in FINAL:
                self.final[proposal_id] = state


TestCrossBorderLifecycle = CrossBorderLifecycle.TestCase
TestCrossBorderLifecycle.settings = settings(max_examples=15, stateful_step_count=20, deadline=None)


# --- the wallet ---------------------------------------------------------------------------------



def test_paywallet_multisig_quote_writes_a_quote_the_contract_accepts(tmp_path, monkeypatch, exchange):
    Keystore(tmp_path / "wallet").save("gw", keys("gateway"), "correct horse", **FLOOR_KDF)
    (tmp_path / "password").write_text("correct horse\n")
    answers = {"node_status": {"height": exchange.chain.ledger.head.height}, "account_get": {"role": "gateway"},
               "chain_getParams": {"chain_id": CHAIN_ID, "genesis_hash": "0x" + exchange.domain.genesis_hash.hex(),
                                   "assets": ASSETS, "contracts": []}}
    monkeypatch.setattr(RpcClient, "call", lambda self, method, *params: answers[method])
    out = tmp_path / "quote.json"
    result = CliRunner().invoke(paywallet, [
        "--wallet-dir", str(tmp_path / "wallet"), "multisig", "quote", "--from", "gw", "--pay", "100.00",
        "--pay-asset", "CNY", "--settle", "14.00", "--settle-asset", "USD", "--valid-blocks", "20",
        "--quote-id", "rate-7", "--out", str(out), "--password-file", str(tmp_path / "password"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["path"] == str(out)
    signed = multisig.read_quote(out)
    assert signed.quote == multisig.make_quote("CNY", PAY, "USD", SETTLE, exchange.chain.ledger.head.height + 20,
                                               "rate-7")
    assert signed.domain == exchange.domain
    assert crypto.verify(keys("gateway").public_key, exchange.domain, crypto.TAG_CONTRACT_MESSAGE,
                         encoding.encode_value(signed.quote), signed.signature)
    receipt, proposal_id = exchange.propose(quote=signed.quote, signature=signed.signature)
    assert receipt.success and proposal_id == multisig.proposal_id_of(signed.gateway, "rate-7")
    again = [
        "--wallet-dir", str(tmp_path / "wallet"), "multisig", "quote", "--from", "gw", "--pay", "1", "--pay-asset",
        "CNY", "--settle", "1", "--settle-asset", "USD", "--password-file", str(tmp_path / "password"), "--out"]
    overwrite = CliRunner().invoke(paywallet, again + [str(out)])
    assert overwrite.exit_code == 1 and "exists" in overwrite.output
    answers["account_get"] = {"role": "user"}
    not_gateway = CliRunner().invoke(paywallet, again + [str(tmp_path / "other.json")])
    assert not_gateway.exit_code == 1 and "gw is not a registered gateway" in not_gateway.output
    assert not (tmp_path / "other.json").exists()


def test_invalid_quote_file_is_refused_before_sending(exchange):
    document = multisig.quote_document(multisig.sign_quote(keys("gateway"), exchange.domain, exchange.quote()))
    assert multisig.parse_quote_document(document).gateway == keys("gateway").address
    replayed = dict(document, genesis_hash="0x" + other_network(exchange.domain).genesis_hash.hex())
    with pytest.raises(multisig.WalletFailure, match="does not verify"):
        multisig.parse_quote_document(replayed)
    with pytest.raises(multisig.WalletFailure, match="malformed"):
        multisig.parse_quote_document({key: value for key, value in document.items() if key != "genesis_hash"})
    changed = json.loads(json.dumps(document))
    changed["quote"]["settle_amount"] += 1
    with pytest.raises(multisig.WalletFailure, match="does not verify"):
        multisig.parse_quote_document(changed)
    other = dict(document, gateway=crypto.format_address(keys("gateway2").address))
    with pytest.raises(multisig.WalletFailure, match="not the gateway's"):
        multisig.parse_quote_document(other)


def test_invalid_quote_for_another_network_is_refused_before_sending(tmp_path, monkeypatch, exchange):
    # A quote signed on another local network (same chain id, other genesis) would fail in the contract: the wallet
    # says so before it signs or sends anything.
    quote = multisig.sign_quote(keys("gateway"), other_network(exchange.domain), exchange.quote())
    (tmp_path / "quote.json").write_text(json.dumps(multisig.quote_document(quote)))
    answers = {"chain_getParams": {"chain_id": CHAIN_ID, "genesis_hash": "0x" + exchange.domain.genesis_hash.hex(),
                                   "assets": ASSETS, "contracts": []}}
    monkeypatch.setattr(RpcClient, "call", lambda self, method, *params: answers[method])
    result = CliRunner().invoke(paywallet, ["--wallet-dir", str(tmp_path / "wallet"), "multisig", "propose",
                                            "--merchant", crypto.format_address(keys("merchant").address),
                                            "--quote", str(tmp_path / "quote.json"), "--from", "alice"])
    assert result.exit_code == 1 and "the quote is for another network" in result.output


@pytest.mark.parametrize("command", ["quote", "propose", "approve", "reject", "cancel", "expire", "show", "deposit",
                                     "withdraw", "liquidity"])
def test_every_multisig_command_has_help(command):
    result = CliRunner().invoke(paywallet, ["multisig", command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output and "--json" in result.output
