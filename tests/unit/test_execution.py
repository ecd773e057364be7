"""The state transition (node/execution.py): every business rule, every inclusion rule, every block rule."""

from __future__ import annotations

import dataclasses

import pytest

from node import blocks, crypto, encoding, limits
from node.blocks import Block, Header, InvalidBlock
from node.execution import (BlockContext, Rejected, apply_block, apply_transaction, execute_candidates,
                            validate_header)
from node.state import (EMPTY_ACCOUNT, RECHARGE_PENDING, RECHARGE_POSTED, RECHARGE_VOIDED, Account, State,
                        recharge_key)
from node.transactions import (CallContract, InvalidTransaction, RechargePost, RechargeRequest, RechargeVoid,
                               Register, Role, Transfer, Withdraw, open_transaction)
from tests.support import CHAIN_ID, keys, make_genesis, other_network, signer_for

GENESIS = make_genesis(users={"alice": {"CNY": 100_000, "USD": 100_000}, "bob": {"CNY": 100_000, "USD": 100_000},
                              "fees": {"CNY": 50}})
DOMAIN = GENESIS.signing_domain
sign = signer_for(GENESIS)
FEES = GENESIS.params.fee_account
ALICE, BOB, GATEWAY, MERCHANT = (keys(n).address for n in ("alice", "bob", "gateway", "merchant"))
STRANGER = keys("stranger").address
CONTEXT = BlockContext(height=1, timestamp_ms=1_700_000_001_000)


def fresh_state() -> State:
    return State(GENESIS.state())


def apply(state: State, raw: bytes):
    return apply_transaction(state, open_transaction(raw, DOMAIN), CONTEXT)


def records(state: State) -> dict:
    return dict(state.iter_records())


def total_supply(state: State, asset: str) -> int:
    return sum(r.balance_of(asset) for k, r in state.iter_records() if isinstance(r, Account))


def assert_only_fee_and_nonce_changed(before: dict, state: State, sender: bytes, fee_asset: str, fee: int) -> None:
    """A failed transaction: the sender paid the fee and used its nonce; nothing else changed."""
    after = records(state)
    sender_before = before.get(b"\x01" + sender, EMPTY_ACCOUNT)
    fees_before = before.get(b"\x01" + FEES, EMPTY_ACCOUNT)
    expected = dict(before)
    paid = sender_before.with_nonce(sender_before.nonce + 1)
    expected[b"\x01" + sender] = paid.with_balance(fee_asset, paid.balance_of(fee_asset) - fee)
    collector = expected.get(b"\x01" + FEES, fees_before)
    expected[b"\x01" + FEES] = collector.with_balance(fee_asset, collector.balance_of(fee_asset) + fee)
    assert after == expected


def rejected(state: State, raw: bytes, code: str, message: str):
    """Apply `raw`, expecting a failed receipt with `code`; check nothing but fee and nonce changed."""
    envelope = open_transaction(raw, DOMAIN)
    before = records(state)
    receipt = apply_transaction(state, envelope, CONTEXT)
    assert (receipt.success, receipt.code) == (False, code), receipt
    assert message in receipt.message
    assert receipt.events == () and receipt.fee_paid == envelope.transaction.fee
    assert_only_fee_and_nonce_changed(before, state, envelope.sender, envelope.transaction.fee_asset,
                                      envelope.transaction.fee)
    return receipt


def not_includable(state: State, raw: bytes, code: str, message: str) -> None:
    """Apply `raw`, expecting InvalidTransaction `code` and no change at all."""
    before = records(state)
    changes = dict(state.changes)
    with pytest.raises(InvalidTransaction) as caught:
        apply(state, raw)
    assert caught.value.code == code and message in caught.value.message
    assert records(state) == before and state.changes == changes


def with_account(state: State, address: bytes, account: Account) -> State:
    state.set_account(address, account)
    return state


def requested(state: State, amount: int = 500, asset: str = "CNY", user: str = "alice", nonce: int = 0) -> bytes:
    """Apply a recharge request to `state` and return its id."""
    raw = sign(user, nonce, RechargeRequest(GATEWAY, asset, amount, "bank memo"))
    assert apply(state, raw).success
    return open_transaction(raw, DOMAIN).hash


# --- successful transactions ------------------------------------------------------------------

def test_transfer_moves_amount_and_fee():
    state = fresh_state()
    receipt = apply(state, sign("alice", 0, Transfer(BOB, "USD", 700), fee=3, fee_asset="CNY"))
    assert receipt.success and receipt.fee_paid == 3 and receipt.fee_asset == "CNY"
    assert [e.name for e in receipt.events] == ["transfer"]
    alice, bob, fees = state.account(ALICE), state.account(BOB), state.account(FEES)
    assert (alice.balance_of("USD"), alice.balance_of("CNY"), alice.nonce) == (99_300, 99_997, 1)
    assert (bob.balance_of("USD"), bob.nonce) == (100_700, 0)
    assert fees.balance_of("CNY") == 53


def test_transfer_to_the_fee_account_credits_both_fee_and_amount():
    state = fresh_state()
    assert apply(state, sign("alice", 0, Transfer(FEES, "CNY", 100), fee=5)).success
    assert state.account(FEES).balance_of("CNY") == 50 + 5 + 100
    assert state.account(ALICE).balance_of("CNY") == 100_000 - 105
    assert total_supply(state, "CNY") == total_supply(fresh_state(), "CNY")


def test_fee_account_paying_its_own_fee_conserves_supply():
    state = fresh_state()
    assert apply(state, sign("fees", 0, Transfer(ALICE, "CNY", 10), fee=5)).success
    assert state.account(FEES).balance_of("CNY") == 40 and state.account(FEES).nonce == 1
    assert total_supply(state, "CNY") == total_supply(fresh_state(), "CNY")


def test_spending_the_whole_balance_leaves_no_balance_entry():
    state = fresh_state()
    assert apply(state, sign("alice", 0, Transfer(BOB, "USD", 100_000), fee=1, fee_asset="CNY")).success
    assert state.account(ALICE).balance_of("USD") == 0
    assert [b.asset for b in state.account(ALICE).balances] == ["CNY"]


def test_register_by_gateway():
    state = fresh_state()
    receipt = apply(state, sign("gateway", 0, Register(STRANGER, int(Role.MERCHANT), b"\x07" * 32)))
    assert receipt.success and receipt.events[0].name == "registered"
    account = state.account(STRANGER)
    assert (account.role, account.kyc_hash, account.registered_by) == (Role.MERCHANT, b"\x07" * 32, GATEWAY)


def test_register_keeps_funds_already_sent_to_the_account():
    state = with_account(fresh_state(), STRANGER, EMPTY_ACCOUNT.with_balance("CNY", 9))
    assert apply(state, sign("gateway", 0, Register(STRANGER, int(Role.USER), bytes(32)))).success
    assert state.account(STRANGER).balance_of("CNY") == 9


def test_recharge_request_post_mints_and_raises_supply():
    state = fresh_state()
    request_id = requested(state, amount=500)
    record = state.get(recharge_key(request_id))
    assert (record.user, record.gateway, record.status, record.height) == (ALICE, GATEWAY, RECHARGE_PENDING, 1)
    assert state.account(ALICE).balance_of("CNY") == 100_000 - 1  # only the fee so far
    receipt = apply(state, sign("gateway", 0, RechargePost(request_id, "bank ref 1")))
    assert receipt.success and receipt.events[0].name == "mint"
    assert state.account(ALICE).balance_of("CNY") == 100_000 - 1 + 500
    assert state.supply("CNY") == GENESIS.state().records[b"\x03CNY"].amount + 500
    assert state.get(recharge_key(request_id)).status == RECHARGE_POSTED
    assert state.get(recharge_key(request_id)).resolution == "bank ref 1"


def test_recharge_void_mints_nothing():
    state = fresh_state()
    request_id = requested(state)
    supply = state.supply("CNY")
    receipt = apply(state, sign("gateway", 0, RechargeVoid(request_id, "funds never arrived")))
    assert receipt.success and receipt.events[0].name == "recharge_voided"
    assert state.get(recharge_key(request_id)).status == RECHARGE_VOIDED
    assert state.supply("CNY") == supply and state.account(ALICE).balance_of("CNY") == 100_000 - 1


def test_withdraw_burns_and_lowers_supply():
    state = fresh_state()
    supply = state.supply("USD")
    receipt = apply(state, sign("alice", 0, Withdraw(GATEWAY, "USD", 250, "payout 1")))
    assert receipt.success and receipt.events[0].name == "burn"
    assert state.account(ALICE).balance_of("USD") == 100_000 - 250
    assert state.supply("USD") == supply - 250 == total_supply(state, "USD")


# --- business rules: failed receipt, only fee and nonce change ---------------------------------------

def moving(asset: str) -> list:
    """One body of each kind that names an asset and needs a registered sender."""
    return [Transfer(BOB, asset, 5), RechargeRequest(GATEWAY, asset, 5, "r"), Withdraw(GATEWAY, asset, 5, "p")]


@pytest.mark.parametrize("body", moving("EUR"), ids=lambda body: type(body).__name__)
def test_invalid_unknown_asset(body):
    rejected(fresh_state(), sign("alice", 0, body), "unknown_asset", "asset 'EUR' is not defined in genesis")


@pytest.mark.parametrize("body", moving("CNY"), ids=lambda body: type(body).__name__)
def test_invalid_unregistered_sender(body):
    state = with_account(fresh_state(), STRANGER, EMPTY_ACCOUNT.with_balance("CNY", 100))
    rejected(state, sign("stranger", 0, body), "not_registered", "sender is not a registered (KYC) account")


def test_invalid_transfer_unregistered_recipient():
    rejected(fresh_state(), sign("alice", 0, Transfer(STRANGER, "CNY", 5)), "not_registered",
             "recipient is not a registered")


def test_invalid_transfer_insufficient_funds():
    rejected(fresh_state(), sign("alice", 0, Transfer(BOB, "USD", 100_001), fee_asset="CNY"), "insufficient_funds",
             "balance 100000 USD is less than the amount 100001")


def test_invalid_transfer_insufficient_funds_after_paying_the_fee():
    # The fee is paid first: 100,000 CNY cannot cover a 100,000 transfer plus a 1 CNY fee.
    rejected(fresh_state(), sign("alice", 0, Transfer(BOB, "CNY", 100_000)), "insufficient_funds",
             "balance 99999 CNY")


def test_invalid_transfer_balance_overflow():
    state = fresh_state()
    with_account(state, BOB, state.account(BOB).with_balance("USD", limits.amount_max))
    rejected(state, sign("alice", 0, Transfer(BOB, "USD", 1)), "balance_overflow", "would exceed the maximum")


def test_invalid_register_by_non_gateway():
    rejected(fresh_state(), sign("alice", 0, Register(STRANGER, int(Role.USER), bytes(32))), "not_gateway",
             "sender is not a registered gateway")


def test_invalid_register_already_registered():
    rejected(fresh_state(), sign("gateway", 0, Register(BOB, int(Role.MERCHANT), bytes(32))), "already_registered",
             "already registered")


def test_invalid_recharge_request_to_a_non_gateway():
    rejected(fresh_state(), sign("alice", 0, RechargeRequest(MERCHANT, "CNY", 5, "r")), "not_gateway",
             "the chosen gateway is not a registered gateway")


@pytest.mark.parametrize("body_class", [RechargePost, RechargeVoid])
def test_invalid_recharge_resolution_unknown_request(body_class):
    rejected(fresh_state(), sign("gateway", 0, body_class(b"\x09" * 32, "x")), "unknown_request",
             "no recharge request with this id")


@pytest.mark.parametrize("body_class", [RechargePost, RechargeVoid])
def test_invalid_recharge_resolution_by_another_account(body_class):
    state = fresh_state()
    request_id = requested(state)
    rejected(state, sign("bob", 0, body_class(request_id, "x")), "not_request_gateway", "only the gateway named")


@pytest.mark.parametrize("first, second", [(RechargePost, RechargePost), (RechargePost, RechargeVoid),
                                           (RechargeVoid, RechargePost), (RechargeVoid, RechargeVoid)])
def test_invalid_recharge_resolution_twice(first, second):
    state = fresh_state()
    request_id = requested(state)
    assert apply(state, sign("gateway", 0, first(request_id, "first"))).success
    rejected(state, sign("gateway", 1, second(request_id, "again")), "request_resolved", "already posted or voided")


def test_invalid_recharge_post_supply_overflow():
    state = fresh_state()
    request_id = requested(state, amount=limits.amount_max)
    rejected(state, sign("gateway", 0, RechargePost(request_id, "x")), "supply_overflow",
             "would exceed the maximum CNY amount")
    assert state.get(recharge_key(request_id)).status == RECHARGE_PENDING


def test_invalid_withdraw_to_a_non_gateway():
    rejected(fresh_state(), sign("alice", 0, Withdraw(BOB, "CNY", 5, "p")), "not_gateway", "the chosen gateway")


def test_invalid_withdraw_insufficient_funds():
    rejected(fresh_state(), sign("alice", 0, Withdraw(GATEWAY, "USD", 100_001, "p")), "insufficient_funds",
             "is less than the amount 100001")


# --- inclusion rules: the transaction may not be in a block, nothing changes --------------------------

def test_invalid_fee_asset_unknown():
    not_includable(fresh_state(), sign("alice", 0, Transfer(BOB, "CNY", 5), fee_asset="EUR"), "unknown_asset",
                   "fee asset 'EUR' is not defined")


def test_invalid_attached_value_asset_unknown():
    body = CallContract(BOB, "pay", encoding.encode_value(()), 1_000, "EUR", 5)
    not_includable(fresh_state(), sign("alice", 0, body, fee=2), "unknown_asset",
                   "attached value asset 'EUR' is not defined")


def test_invalid_fee_too_low():
    not_includable(fresh_state(), sign("alice", 0, Transfer(BOB, "CNY", 5), fee=1, fee_asset="USD"), "fee_too_low",
                   "fee 1 is below the minimum 2 USD")


@pytest.mark.parametrize("nonce", [1, 7])
def test_invalid_nonce_ahead(nonce):
    not_includable(fresh_state(), sign("alice", nonce, Transfer(BOB, "CNY", 5)), "bad_nonce",
                   f"nonce {nonce} does not match the account nonce 0")


def test_invalid_nonce_replayed():
    state = fresh_state()
    raw = sign("alice", 0, Transfer(BOB, "CNY", 5))
    assert apply(state, raw).success
    not_includable(state, raw, "bad_nonce", "nonce 0 does not match the account nonce 1")


def test_invalid_cannot_pay_fee():
    state = with_account(fresh_state(), STRANGER, EMPTY_ACCOUNT.with_balance("CNY", 1))
    not_includable(state, sign("stranger", 0, Transfer(BOB, "CNY", 1), fee=2), "cannot_pay_fee",
                   "cannot pay the fee of 2 CNY")


def test_invalid_cannot_pay_fee_from_an_unknown_account():
    not_includable(fresh_state(), sign("stranger", 0, Transfer(BOB, "CNY", 1)), "cannot_pay_fee", "fee of 1 CNY")


def test_invalid_fee_overflow():
    state = fresh_state()
    with_account(state, FEES, state.account(FEES).with_balance("CNY", limits.amount_max))
    not_includable(state, sign("alice", 0, Transfer(BOB, "CNY", 5)), "fee_overflow", "would exceed the maximum")


# --- blocks -------------------------------------------------------------------------------------

def make_block(raws: list[bytes], height: int = 1, **header_changes) -> Block:
    """A block of `raws` on genesis with correct roots (state root left zero: the caller checks it)."""
    scratch = State(GENESIS.state())
    envelopes = [open_transaction(raw, DOMAIN) for raw in raws]
    receipts = [apply_transaction(scratch, e, BlockContext(height, 1_700_000_001_000)) for e in envelopes]
    header = Header(CHAIN_ID, height, 0, GENESIS.hash, keys("validator-0").address, 1_700_000_001_000, len(raws),
                    blocks.tx_root([e.hash for e in envelopes]), blocks.receipts_root(receipts), bytes(32))
    return Block(dataclasses.replace(header, **header_changes), tuple(raws))


TWO_TRANSFERS = [sign("alice", 0, Transfer(BOB, "CNY", 5)), sign("bob", 0, Transfer(STRANGER, "USD", 5), fee=2, fee_asset="USD")]


def test_apply_block_returns_new_state_and_receipts_without_touching_the_input():
    state = fresh_state()
    new_state, receipts = apply_block(state, make_block(TWO_TRANSFERS))
    assert [r.success for r in receipts] == [True, False]  # the stranger is not registered
    assert receipts[1].code == "not_registered"
    assert state.changes == {}
    assert new_state.account(BOB).balance_of("CNY") == 100_005
    assert new_state.account(BOB).balance_of("USD") == 100_000 - 2  # failed: only the fee left


def test_empty_block_changes_nothing():
    new_state, receipts = apply_block(fresh_state(), make_block([]))
    assert receipts == () and new_state.changes == {}


def test_invalid_block_tx_count_mismatch():
    with pytest.raises(InvalidBlock, match="tx_count does not match"):
        apply_block(fresh_state(), make_block(TWO_TRANSFERS, tx_count=1))


def test_invalid_block_tx_root_mismatch():
    with pytest.raises(InvalidBlock, match="tx root does not match"):
        apply_block(fresh_state(), make_block(TWO_TRANSFERS, tx_root=bytes(32)))


def test_invalid_block_reordered_transactions_break_the_tx_root():
    block = make_block(TWO_TRANSFERS)
    with pytest.raises(InvalidBlock, match="tx root does not match"):
        apply_block(fresh_state(), Block(block.header, tuple(reversed(block.transactions))))


def test_invalid_block_receipts_root_mismatch():
    with pytest.raises(InvalidBlock, match="receipts root does not match"):
        apply_block(fresh_state(), make_block(TWO_TRANSFERS, receipts_root=bytes(32)))


def test_invalid_block_transaction_does_not_open():
    forged = sign("alice", 0, Transfer(BOB, "CNY", 5), domain=crypto.SigningDomain("other-chain", DOMAIN.genesis_hash))
    block = Block(make_block([]).header, (forged,))
    with pytest.raises(InvalidBlock, match="transaction 0 is invalid: transaction is for chain 'other-chain'"):
        apply_block(fresh_state(), dataclasses.replace(block, header=dataclasses.replace(block.header, tx_count=1)))


def test_invalid_block_transaction_signed_for_another_genesis_with_the_same_chain_id():
    replayed = sign("alice", 0, Transfer(BOB, "CNY", 5), domain=other_network(DOMAIN))
    block = Block(make_block([]).header, (replayed,))
    with pytest.raises(InvalidBlock, match="transaction 0 is invalid: signature does not verify"):
        apply_block(fresh_state(), dataclasses.replace(block, header=dataclasses.replace(block.header, tx_count=1)))


def test_invalid_block_transaction_may_not_be_included():
    raws = [sign("alice", 0, Transfer(BOB, "CNY", 5)), sign("alice", 0, Transfer(BOB, "CNY", 6))]
    with pytest.raises(InvalidTransaction):
        make_block(raws)
    envelopes = [open_transaction(raw, DOMAIN) for raw in raws]
    header = dataclasses.replace(make_block([]).header, tx_count=2, tx_root=blocks.tx_root([e.hash for e in envelopes]))
    state = fresh_state()
    with pytest.raises(InvalidBlock, match="transaction 1 may not be included: nonce 0 does not match"):
        apply_block(state, Block(header, tuple(raws)))
    assert state.changes == {}


def test_invalid_block_with_a_transaction_twice():
    raw = TWO_TRANSFERS[0]
    header = dataclasses.replace(make_block([]).header, tx_count=2,
                                 tx_root=blocks.tx_root([open_transaction(raw, DOMAIN).hash] * 2))
    with pytest.raises(InvalidBlock, match="transaction 1 may not be included"):
        apply_block(fresh_state(), Block(header, (raw, raw)))


def test_apply_block_reuses_opened_envelopes():
    block = make_block(TWO_TRANSFERS)
    opened = {e.hash: e for e in (open_transaction(raw, DOMAIN) for raw in TWO_TRANSFERS)}
    assert apply_block(fresh_state(), block, opened)[1] == apply_block(fresh_state(), block)[1]


PARENT = make_block([]).header


def test_validate_header_accepts_the_child_of_its_parent():
    child = dataclasses.replace(PARENT, height=2, parent_hash=blocks.header_hash(PARENT))
    validate_header(PARENT, blocks.header_hash(PARENT), child, CHAIN_ID)
    validate_header(None, GENESIS.hash, PARENT, CHAIN_ID)


def test_invalid_header_chain_id():
    with pytest.raises(InvalidBlock, match="block is for chain 'other'"):
        validate_header(None, GENESIS.hash, dataclasses.replace(PARENT, chain_id="other"), CHAIN_ID)


@pytest.mark.parametrize("height", [0, 2, 3])
def test_invalid_header_height(height):
    with pytest.raises(InvalidBlock, match=f"block height {height}, expected 1"):
        validate_header(None, GENESIS.hash, dataclasses.replace(PARENT, height=height), CHAIN_ID)


def test_invalid_header_parent_hash():
    with pytest.raises(InvalidBlock, match="parent hash is not the last committed block"):
        validate_header(None, GENESIS.hash, dataclasses.replace(PARENT, parent_hash=bytes(32)), CHAIN_ID)


def test_invalid_header_timestamp_before_parent():
    child = dataclasses.replace(PARENT, height=2, parent_hash=blocks.header_hash(PARENT),
                                timestamp_ms=PARENT.timestamp_ms - 1)
    with pytest.raises(InvalidBlock, match="timestamp is earlier than its parent's"):
        validate_header(PARENT, blocks.header_hash(PARENT), child, CHAIN_ID)


# --- proposer -----------------------------------------------------------------------------------

def test_execute_candidates_skips_what_cannot_be_included_and_keeps_order():
    candidates = [open_transaction(raw, DOMAIN) for raw in [
        sign("alice", 0, Transfer(BOB, "CNY", 5)),
        sign("alice", 5, Transfer(BOB, "CNY", 5)),                 # nonce gap
        sign("stranger", 0, Transfer(BOB, "CNY", 5)),              # cannot pay the fee
        sign("bob", 0, Transfer(ALICE, "CNY", 5), fee_asset="USD", fee=2),
    ]]
    state = fresh_state()
    new_state, included, receipts, skipped = execute_candidates(state, candidates, CONTEXT, 100, 10**6)
    assert included == [candidates[0], candidates[3]] and len(receipts) == 2
    assert [(e, code) for e, code in skipped] == [(candidates[1], "bad_nonce"), (candidates[2], "cannot_pay_fee")]
    assert state.changes == {} and new_state.account(ALICE).nonce == 1


def test_execute_candidates_stops_at_the_count_and_byte_limits():
    candidates = [open_transaction(sign("alice", n, Transfer(BOB, "CNY", 5)), DOMAIN) for n in range(5)]
    assert len(execute_candidates(fresh_state(), candidates, CONTEXT, 3, 10**6)[1]) == 3
    size = len(candidates[0].raw)
    assert len(execute_candidates(fresh_state(), candidates, CONTEXT, 100, 2 * size + size - 1)[1]) == 2


def test_invalid_block_repeating_its_last_transaction_despite_the_same_merkle_root():
    # An odd Merkle level pairs the last node with itself, so [a, b, c, c] has the root of [a, b, c]:
    # only the header's tx_count tells the two bodies apart.
    raws = [sign("alice", n, Transfer(BOB, "CNY", 5)) for n in range(3)]
    block = make_block(raws)
    padded = Block(block.header, block.transactions + block.transactions[-1:])
    assert blocks.tx_root([open_transaction(r, DOMAIN).hash for r in padded.transactions]) == block.header.tx_root
    with pytest.raises(InvalidBlock, match="tx_count does not match"):
        apply_block(fresh_state(), padded)
