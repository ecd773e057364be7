"""A stateful model of the ledger: random payments, recharges and withdrawals against an independent model.

Hypothesis drives a `TestChain` (mempool -> proposal -> commit) with transfers (including overspends and
unregistered recipients), registrations, recharge requests, posts and voids, withdrawals and replays. A small
dictionary model predicts every admission decision and every receipt; after each step the ledger must agree
with the model, conserve supply, hold no negative balance, count nonces exactly, and a second ledger that
replays the committed blocks from the store must reach the same state root at every height.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node import crypto, limits
from node.app import Ledger
from node.state import KEY_ACCOUNT, RECHARGE_PENDING, RECHARGE_POSTED, RECHARGE_VOIDED, Account
from node.storage.chain import ChainStore
from node.storage.kv import MemoryStore
from node.transactions import (InvalidTransaction, RechargePost, RechargeRequest, RechargeVoid, Register, Role,
                               Transfer, Withdraw, open_transaction)
from tests.support import keys, make_chain, make_genesis, sign

GENESIS = make_genesis()
ASSET_CODES = ("CNY", "USD")
MIN_FEE = {asset.code: asset.min_fee for asset in GENESIS.params.assets}
FEE_ACCOUNT = GENESIS.params.fee_account
STRANGERS = ("stranger-0", "stranger-1")
NAMES = ("alice", "bob", "gateway", "merchant") + STRANGERS
"""Everyone who may sign: the genesis accounts and two strangers who start unregistered and empty."""
ADDRESS = {name: keys(name).address for name in NAMES + ("fees",)}
assert ADDRESS["fees"] == FEE_ACCOUNT

AMOUNTS = st.integers(1, 2_000) | st.integers(1, 250_000)
"""Mostly affordable amounts, and many that overspend (users hold 100,000 of each asset)."""
FEES = st.sampled_from([("CNY", 1), ("CNY", 2), ("CNY", 3), ("USD", 2), ("USD", 3), ("CNY", 1), ("USD", 2),
                        ("CNY", 1), ("USD", 1)])
"""Fee asset and fee; a few fees are below the asset's minimum."""
SENDERS = ("alice", "alice", "bob", "bob", "gateway", "merchant") + STRANGERS
"""Who signs payments: mostly funded users, sometimes an unregistered stranger."""
RARELY = st.integers(0, 4).map(lambda n: n == 0)


def genesis_supply(asset: str) -> int:
    return dict(GENESIS.records)[b"\x03" + asset.encode()].amount


class LedgerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain = make_chain(GENESIS)
        self.replica = self.follower()
        state = self.chain.ledger.state()
        self.balances: Counter = Counter()
        """(address, asset) -> amount, the model's ledger."""
        for address in ADDRESS.values():
            for asset in ASSET_CODES:
                self.balances[address, asset] = state.account(address).balance_of(asset)
        self.roles = {address: state.account(address).role for address in ADDRESS.values()}
        self.nonces: Counter = Counter()
        self.requests: dict[bytes, list] = {}
        """request id -> [user, gateway, asset, amount, status]."""
        self.minted: Counter = Counter()
        self.burned: Counter = Counter()
        self.pending: list = []
        """Envelopes admitted since the last commit, in admission order."""
        self.committed_raws: list[bytes] = []
        self.committed_per_sender: Counter = Counter()
        self.roots = [self.chain.ledger.head.state_root]
        """State root at each height, from genesis."""

    # --- submitting ----------------------------------------------------------------------------

    def pending_costs(self, address: bytes) -> Counter:
        costs: Counter = Counter()
        for envelope in self.pending:
            if envelope.sender == address:
                transaction = envelope.transaction
                costs[transaction.fee_asset] += transaction.fee
                if isinstance(transaction.body, (Transfer, Withdraw)):
                    costs[transaction.body.asset] += transaction.body.amount
        return costs

    def expected_admission(self, address: bytes, body, fee_asset: str, fee: int) -> str | None:
        """The rule the node must name when refusing this transaction, or None if it must admit it."""
        if isinstance(body, Transfer) and body.recipient == address:
            return "self_transfer"
        if fee < MIN_FEE[fee_asset]:
            return "fee_too_low"
        if sum(1 for e in self.pending if e.sender == address) >= limits.nonce_window_max:
            return "nonce_too_far"
        if isinstance(body, (Transfer, Withdraw, RechargeRequest)) and self.roles.get(address, 0) == 0:
            return "not_registered"
        costs = self.pending_costs(address)
        costs[fee_asset] += fee
        if isinstance(body, (Transfer, Withdraw)):
            costs[body.asset] += body.amount
        if any(costs[asset] > self.balances[address, asset] for asset in costs):
            return "insufficient_funds"
        return None

    def submit(self, name: str, body, fee: tuple[str, int]) -> None:
        fee_asset, fee_amount = fee
        address = ADDRESS[name]
        ledger = self.chain.ledger
        nonce = ledger.mempool.pending_nonce(address, ledger.state().account(address).nonce)
        assert nonce == self.nonces[address] + sum(1 for e in self.pending if e.sender == address)
        raw = sign(name, nonce, body, fee=fee_amount, fee_asset=fee_asset)
        expected = self.expected_admission(address, body, fee_asset, fee_amount)
        pending_before = len(ledger.mempool)
        try:
            ledger.check_tx(raw)
            refused = None
        except InvalidTransaction as error:
            refused = error.code
        assert refused == expected, (name, body, refused, expected)
        event(f"admission: {refused or 'admitted'}")
        if refused is None:
            self.pending.append(open_transaction(raw, GENESIS.signing_domain))
            assert len(ledger.mempool) == pending_before + 1
        else:
            assert len(ledger.mempool) == pending_before

    # --- rules ----------------------------------------------------------------------------------

    @rule(sender=st.sampled_from(SENDERS), recipient=st.sampled_from(NAMES + ("fees",)),
          asset=st.sampled_from(ASSET_CODES), amount=AMOUNTS, fee=FEES)
    def transfer(self, sender, recipient, asset, amount, fee):
        self.submit(sender, Transfer(ADDRESS[recipient], asset, amount), fee)

    @rule(sender=st.sampled_from(("gateway", "gateway", "alice")), account=st.sampled_from(STRANGERS + ("bob",)),
          role=st.sampled_from(list(Role)), fee=FEES)
    def register(self, sender, account, role, fee):
        self.submit(sender, Register(ADDRESS[account], int(role), crypto.hash_bytes(account.encode())), fee)

    @rule(user=st.sampled_from(SENDERS), gateway=st.sampled_from(("gateway", "gateway", "merchant")),
          asset=st.sampled_from(ASSET_CODES), amount=AMOUNTS, fee=FEES)
    def recharge_request(self, user, gateway, asset, amount, fee):
        self.submit(user, RechargeRequest(ADDRESS[gateway], asset, amount, f"bank transfer {amount}"), fee)

    @rule(post=st.booleans(), signer=st.sampled_from(("gateway", "gateway", "gateway", "alice")),
          pick=st.integers(0, 1_000), bogus=RARELY, fee=FEES)
    def recharge_resolve(self, post, signer, pick, bogus, fee):
        known = sorted(self.requests)
        request_id = crypto.hash_bytes(b"no such request") if bogus or not known else known[pick % len(known)]
        body = RechargePost(request_id, "funds arrived") if post else RechargeVoid(request_id, "funds missing")
        self.submit(signer, body, fee)

    @rule(user=st.sampled_from(SENDERS), gateway=st.sampled_from(("gateway", "gateway", "bob")),
          asset=st.sampled_from(ASSET_CODES), amount=AMOUNTS, fee=FEES)
    def withdraw(self, user, gateway, asset, amount, fee):
        self.submit(user, Withdraw(ADDRESS[gateway], asset, amount, f"payout {amount}"), fee)

    @precondition(lambda self: self.committed_raws)
    @rule(pick=st.integers(0, 1_000))
    def replay_committed(self, pick):
        raw = self.committed_raws[pick % len(self.committed_raws)]
        try:
            self.chain.ledger.check_tx(raw)
        except InvalidTransaction as error:
            assert error.code == "already_committed"
        else:
            raise AssertionError("a committed transaction was admitted again")

    @precondition(lambda self: self.pending)
    @rule(pick=st.integers(0, 1_000))
    def replay_pending(self, pick):
        envelope = self.pending[pick % len(self.pending)]
        try:
            self.chain.ledger.check_tx(envelope.raw)
        except InvalidTransaction as error:
            assert error.code == "already_known"
        else:
            raise AssertionError("a pending transaction was admitted twice")

    @rule()
    def commit(self):
        committed = self.chain.commit_pending()
        # Everything admitted was payable when admitted and stays payable: all of it is in the block.
        assert sorted(e.hash for e in committed.envelopes) == sorted(e.hash for e in self.pending)
        assert len(self.chain.ledger.mempool) == 0
        for envelope, receipt in zip(committed.envelopes, committed.receipts):
            expected = self.apply(envelope, committed.block.header.height)
            assert (receipt.success, receipt.code) == expected, (envelope.transaction, receipt)
            event(f"receipt: {type(envelope.transaction.body).__name__} {receipt.code or 'success'}")
            assert receipt.fee_paid == envelope.transaction.fee
            self.committed_raws.append(envelope.raw)
            self.committed_per_sender[envelope.sender] += 1
        self.pending = []
        self.roots.append(self.chain.ledger.head.state_root)
        self.follow_on_replica()

    def follower(self) -> Ledger:
        """A fresh ledger on the same genesis whose clock is the test chain's (so long runs stay in its skew)."""
        return Ledger(ChainStore(MemoryStore(), GENESIS), clock_ms=lambda: self.chain.now_ms)

    def follow_on_replica(self) -> None:
        """Replay the newest block from the store on the replica ledger."""
        store = self.chain.ledger.store
        height = store.head.height
        block, certificate = store.get_block(height), store.get_certificate(height)
        self.replica.process_proposal(block)
        self.replica.commit(block, certificate)
        assert self.replica.head == store.head
        assert self.replica.committed.root == self.roots[height] == block.header.state_root

    # --- the model's execution ------------------------------------------------------------------------

    def apply(self, envelope, height: int) -> tuple[bool, str]:
        transaction, sender = envelope.transaction, envelope.sender
        assert self.balances[sender, transaction.fee_asset] >= transaction.fee
        self.balances[sender, transaction.fee_asset] -= transaction.fee
        self.balances[FEE_ACCOUNT, transaction.fee_asset] += transaction.fee
        self.nonces[sender] += 1
        failure = self.apply_body(envelope, transaction.body, sender)
        return (failure is None, failure or "")

    def apply_body(self, envelope, body, sender: bytes) -> str | None:
        registered = self.roles.get(sender, 0) != 0
        if isinstance(body, Transfer):
            if not registered or self.roles.get(body.recipient, 0) == 0:
                return "not_registered"
            if self.balances[sender, body.asset] < body.amount:
                return "insufficient_funds"
            self.balances[sender, body.asset] -= body.amount
            self.balances[body.recipient, body.asset] += body.amount
            return None
        if isinstance(body, Register):
            if self.roles.get(sender, 0) != Role.GATEWAY:
                return "not_gateway"
            if self.roles.get(body.account, 0) != 0:
                return "already_registered"
            self.roles[body.account] = body.role
            return None
        if isinstance(body, RechargeRequest):
            if not registered:
                return "not_registered"
            if self.roles.get(body.gateway, 0) != Role.GATEWAY:
                return "not_gateway"
            self.requests[envelope.hash] = [sender, body.gateway, body.asset, body.amount, RECHARGE_PENDING]
            return None
        if isinstance(body, (RechargePost, RechargeVoid)):
            request = self.requests.get(body.request_id)
            if request is None:
                return "unknown_request"
            user, gateway, asset, amount, status = request
            if gateway != sender:
                return "not_request_gateway"
            if status != RECHARGE_PENDING:
                return "request_resolved"
            if isinstance(body, RechargeVoid):
                request[4] = RECHARGE_VOIDED
                return None
            request[4] = RECHARGE_POSTED
            self.balances[user, asset] += amount
            self.minted[asset] += amount
            return None
        assert isinstance(body, Withdraw)
        if not registered:
            return "not_registered"
        if self.roles.get(body.gateway, 0) != Role.GATEWAY:
            return "not_gateway"
        if self.balances[sender, body.asset] < body.amount:
            return "insufficient_funds"
        self.balances[sender, body.asset] -= body.amount
        self.burned[body.asset] += body.amount
        return None

    # --- invariants ------------------------------------------------------------------------------------

    def accounts(self) -> dict[bytes, Account]:
        return {key[1:]: record for key, record in self.chain.ledger.committed.records.items()
                if key[:1] == KEY_ACCOUNT}

    @invariant()
    def supply_is_conserved(self):
        state = self.chain.ledger.state()
        accounts = self.accounts()
        for asset in ASSET_CODES:
            total = sum(account.balance_of(asset) for account in accounts.values())
            assert total == state.supply(asset) == genesis_supply(asset) + self.minted[asset] - self.burned[asset]

    @invariant()
    def no_negative_balance(self):
        for account in self.accounts().values():
            assert all(balance.amount > 0 for balance in account.balances)
        assert all(amount >= 0 for amount in self.balances.values())

    @invariant()
    def ledger_matches_the_model(self):
        state = self.chain.ledger.state()
        for address in ADDRESS.values():
            account = state.account(address)
            for asset in ASSET_CODES:
                assert account.balance_of(asset) == self.balances[address, asset]
            assert account.role == self.roles.get(address, 0)
        for request_id, (user, gateway, asset, amount, status) in self.requests.items():
            record = state.get(b"\x02" + request_id)
            assert (record.user, record.gateway, record.asset, record.amount, record.status) == \
                (user, gateway, asset, amount, status)

    @invariant()
    def nonces_count_committed_transactions(self):
        for address, account in self.accounts().items():
            assert account.nonce == self.committed_per_sender[address] == self.nonces[address]

    @invariant()
    def replica_is_at_the_same_state(self):
        assert self.replica.head == self.chain.ledger.head
        assert self.replica.committed.root == self.chain.ledger.committed.root

    def teardown(self):
        """Commit what is pending and check it; then a fresh ledger replaying every stored block and
        certificate must reach the same state root at every height."""
        if self.pending:
            self.commit()
            self.supply_is_conserved()
            self.ledger_matches_the_model()
            self.nonces_count_committed_transactions()
        store = self.chain.ledger.store
        fresh = self.follower()
        assert fresh.committed.root == self.roots[0]
        for height in range(1, store.head.height + 1):
            fresh.commit(store.get_block(height), store.get_certificate(height))
            assert fresh.committed.root == self.roots[height]
        assert fresh.committed.records == self.chain.ledger.committed.records


LedgerModel.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
TestLedgerModel = LedgerModel.TestCase
