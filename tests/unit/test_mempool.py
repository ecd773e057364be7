"""The mempool (node/mempool.py): every admission rule, bounds, ordering, recheck after commit, expiry."""

from __future__ import annotations

import pytest

from node.mempool import Mempool, costs_of, mempool_tx_ttl_ms
from node.state import EMPTY_ACCOUNT, State
from node.transactions import (InvalidTransaction, RechargePost, RechargeRequest, Register, Role, Transfer,
                               Withdraw, open_transaction)
from tests.support import keys, make_genesis, sign

GENESIS = make_genesis()
ALICE, BOB, GATEWAY = (keys(n).address for n in ("alice", "bob", "gateway"))
STRANGER = keys("stranger").address


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000

    def __call__(self) -> int:
        return self.now_ms


def state() -> State:
    return State(GENESIS.state())


def envelope(raw: bytes):
    return open_transaction(raw, GENESIS.signing_domain)


def transfer(sender: str, nonce: int, amount: int = 5, **options):
    return envelope(sign(sender, nonce, Transfer(BOB if sender != "bob" else ALICE, "CNY", amount), **options))


def refused(mempool: Mempool, item, view: State, code: str, message: str) -> None:
    size, count = mempool.bytes, len(mempool)
    with pytest.raises(InvalidTransaction) as caught:
        mempool.add(item, view)
    assert caught.value.code == code and message in caught.value.message
    assert (mempool.bytes, len(mempool)) == (size, count) and item.hash not in mempool


def test_admitted_transaction_is_pending():
    mempool = Mempool()
    item = transfer("alice", 0)
    mempool.add(item, state())
    assert item.hash in mempool and len(mempool) == 1 and mempool.bytes == len(item.raw)


def test_costs_count_fee_and_amount_per_asset():
    item = envelope(sign("alice", 0, Transfer(BOB, "USD", 40), fee=3, fee_asset="CNY"))
    assert costs_of(item) == {"CNY": 3, "USD": 40}
    assert costs_of(envelope(sign("alice", 0, Withdraw(GATEWAY, "CNY", 40, "p"), fee=3))) == {"CNY": 43}
    assert costs_of(envelope(sign("alice", 0, RechargeRequest(GATEWAY, "CNY", 40, "r"), fee=3))) == {"CNY": 3}


# --- admission rules -----------------------------------------------------------------------------

def test_invalid_already_known():
    mempool = Mempool()
    item = transfer("alice", 0)
    mempool.add(item, state())
    with pytest.raises(InvalidTransaction) as caught:
        mempool.add(item, state())
    assert caught.value.code == "already_known" and len(mempool) == 1


def test_invalid_unknown_fee_asset():
    refused(Mempool(), transfer("alice", 0, fee_asset="EUR"), state(), "unknown_asset", "'EUR' is not defined")


@pytest.mark.parametrize("body", [Transfer(BOB, "EUR", 5), Withdraw(GATEWAY, "EUR", 5, "p"),
                                  RechargeRequest(GATEWAY, "EUR", 5, "r")], ids=lambda b: type(b).__name__)
def test_invalid_unknown_body_asset(body):
    refused(Mempool(), envelope(sign("alice", 0, body)), state(), "unknown_asset", "'EUR' is not defined")


def test_invalid_fee_too_low():
    refused(Mempool(), transfer("alice", 0, fee=1, fee_asset="USD"), state(), "fee_too_low",
            "fee 1 is below the minimum 2")


def test_invalid_nonce_used():
    view = state()
    view.set_account(ALICE, view.account(ALICE).with_nonce(3))
    refused(Mempool(), transfer("alice", 2), view, "nonce_used", "nonce 2 was already used (account nonce 3)")


def test_invalid_nonce_too_far():
    mempool = Mempool(nonce_window=4)
    mempool.add(transfer("alice", 3), state())
    refused(mempool, transfer("alice", 4), state(), "nonce_too_far", "nonce 4 is more than 4 ahead")


def test_invalid_nonce_taken():
    mempool = Mempool()
    mempool.add(transfer("alice", 0, amount=5), state())
    refused(mempool, transfer("alice", 0, amount=6), state(), "nonce_taken", "another transaction with nonce 0")


@pytest.mark.parametrize("body", [Transfer(BOB, "CNY", 5), Withdraw(GATEWAY, "CNY", 5, "p"),
                                  RechargeRequest(GATEWAY, "CNY", 5, "r")], ids=lambda b: type(b).__name__)
def test_invalid_not_registered(body):
    view = state()
    view.set_account(STRANGER, EMPTY_ACCOUNT.with_balance("CNY", 1_000))
    refused(Mempool(), envelope(sign("stranger", 0, body)), view, "not_registered", "not a registered (KYC)")


def test_unregistered_sender_may_still_send_what_execution_judges():
    # A registration by a non-gateway is admitted: execution charges the fee and names the rule.
    view = state()
    view.set_account(STRANGER, EMPTY_ACCOUNT.with_balance("CNY", 1_000))
    Mempool().add(envelope(sign("stranger", 0, Register(BOB, int(Role.USER), bytes(32)))), view)


def test_invalid_insufficient_funds_for_one():
    refused(Mempool(), transfer("alice", 0, amount=100_000), state(), "insufficient_funds",
            "balance 100000 CNY cannot pay 100001")


def test_invalid_insufficient_funds_counting_pending_transactions():
    mempool = Mempool()
    mempool.add(transfer("alice", 0, amount=60_000), state())
    refused(mempool, transfer("alice", 1, amount=40_000), state(), "insufficient_funds",
            "cannot pay 100002 for this and pending transactions")
    mempool.add(transfer("alice", 1, amount=39_998), state())


def test_invalid_insufficient_funds_for_the_fee_asset():
    view = state()
    view.set_account(ALICE, view.account(ALICE).with_balance("USD", 1))
    refused(Mempool(), transfer("alice", 0, fee=2, fee_asset="USD"), view, "insufficient_funds", "1 USD")


def test_invalid_mempool_full_by_count():
    mempool = Mempool(txs_max=2)
    mempool.add(transfer("alice", 0), state())
    mempool.add(transfer("bob", 0), state())
    refused(mempool, transfer("alice", 1), state(), "mempool_full", "the mempool is full")


def test_invalid_mempool_full_by_bytes():
    first = transfer("alice", 0)
    mempool = Mempool(bytes_max=2 * len(first.raw) - 1)
    mempool.add(first, state())
    refused(mempool, transfer("bob", 0), state(), "mempool_full", "the mempool is full")


# --- reading -----------------------------------------------------------------------------------

def test_pending_nonce_skips_the_consecutive_run():
    mempool = Mempool()
    for nonce in (0, 1, 3):
        mempool.add(transfer("alice", nonce), state())
    assert mempool.pending_nonce(ALICE, 0) == 2
    assert mempool.pending_nonce(BOB, 4) == 4


def test_reap_takes_senders_in_arrival_order_and_only_consecutive_nonces():
    mempool = Mempool()
    items = [transfer("bob", 0), transfer("alice", 1), transfer("alice", 0), transfer("bob", 2), transfer("bob", 1)]
    for item in items:
        mempool.add(item, state())
    chosen = mempool.reap(state(), 100, 10**6)
    assert [(e.sender, e.nonce) for e in chosen] == [(BOB, 0), (BOB, 1), (BOB, 2), (ALICE, 0), (ALICE, 1)]


def test_reap_leaves_a_nonce_gap_behind():
    mempool = Mempool()
    mempool.add(transfer("alice", 1), state())
    assert mempool.reap(state(), 100, 10**6) == []


def test_reap_respects_count_and_byte_limits():
    mempool = Mempool()
    items = [transfer("alice", n) for n in range(4)]
    for item in items:
        mempool.add(item, state())
    assert mempool.reap(state(), 2, 10**6) == items[:2]
    assert mempool.reap(state(), 100, 3 * len(items[0].raw)) == items[:3]


# --- after a commit ------------------------------------------------------------------------------

def test_update_drops_used_nonces():
    mempool = Mempool()
    items = [transfer("alice", n) for n in range(3)]
    for item in items:
        mempool.add(item, state())
    view = state()
    view.set_account(ALICE, view.account(ALICE).with_nonce(2))
    assert mempool.update(view, {ALICE}) == 2
    assert len(mempool) == 1 and items[2].hash in mempool
    assert mempool.bytes == len(items[2].raw)


def test_update_drops_what_the_new_balance_cannot_pay_and_everything_after_it():
    mempool = Mempool()
    items = [transfer("alice", n, amount=30_000) for n in range(3)]
    for item in items:
        mempool.add(item, state())
    view = state()
    view.set_account(ALICE, view.account(ALICE).with_balance("CNY", 60_001))  # pays one (30,001), not two
    assert mempool.update(view, {ALICE}) == 2
    assert [items[0].hash in mempool, items[1].hash in mempool, items[2].hash in mempool] == [True, False, False]


def test_update_drops_rejected_transactions():
    mempool = Mempool()
    first, second = transfer("alice", 0), transfer("bob", 0)
    mempool.add(first, state())
    mempool.add(second, state())
    assert mempool.update(state(), set(), [(first, "cannot_pay_fee")]) == 1
    assert first.hash not in mempool and second.hash in mempool


def test_update_leaves_other_senders_alone():
    mempool = Mempool()
    mempool.add(transfer("bob", 0), state())
    view = state()
    view.set_account(BOB, view.account(BOB).with_balance("CNY", 0))
    assert mempool.update(view, {ALICE}) == 0 and len(mempool) == 1


def test_expired_transactions_leave_after_the_ttl():
    clock = Clock()
    mempool = Mempool(clock_ms=clock)
    old = transfer("alice", 1)  # stuck behind a nonce gap
    mempool.add(old, state())
    clock.now_ms += mempool_tx_ttl_ms // 2
    young = transfer("bob", 1)
    mempool.add(young, state())
    clock.now_ms += mempool_tx_ttl_ms // 2
    assert mempool.update(state(), set()) == 0  # exactly the TTL old: still there
    clock.now_ms += 1
    assert mempool.update(state(), set()) == 1
    assert old.hash not in mempool and young.hash in mempool
    assert mempool.pending_nonce(ALICE, 0) == 0


def test_freed_room_is_reusable():
    mempool = Mempool(txs_max=1)
    first = transfer("alice", 0)
    mempool.add(first, state())
    mempool.update(state(), set(), [(first, "x")])
    mempool.add(transfer("alice", 0, amount=6), state())
    assert len(mempool) == 1


def test_register_and_post_cost_only_the_fee():
    item = envelope(sign("gateway", 0, RechargePost(bytes(32), "r"), fee=7))
    assert costs_of(item) == {"CNY": 7}


def test_waiting_since_lists_the_oldest_first_and_only_those_old_enough():
    clock = Clock()
    mempool = Mempool(clock_ms=clock)
    first, second = transfer("alice", 0), transfer("alice", 1)
    mempool.add(first, state())
    mempool.add(second, state())
    clock.now_ms += 1_000
    third = transfer("bob", 0)
    mempool.add(third, state())
    assert mempool.waiting_since(1_001, 10) == []
    assert mempool.waiting_since(1_000, 10) == [first.raw, second.raw]
    assert mempool.waiting_since(1_000, 1) == [first.raw]
    assert mempool.waiting_since(0, 10) == [first.raw, second.raw, third.raw]
