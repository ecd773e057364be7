"""Pending transactions, bounded by count and bytes, deduplicated on (sender, nonce).

Admission checks everything that can be known before execution (fee, nonce window,
that the sender can pay for all its pending transactions) and names the reason for
every rejection. After each commit the senders of the committed block are rechecked:
used nonces leave, and transactions their new balance can no longer pay for leave too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from node import limits
from node.state import Account, State
from node.transactions import (Envelope, InvalidTransaction, RechargeRequest, Transfer, Withdraw, attached_value_of,
                               required_fee)

mempool_tx_ttl_ms = 10 * 60 * 1000
"""A transaction that could not be included for this long (e.g. behind a nonce gap) is dropped."""


def costs_of(envelope: Envelope) -> dict[str, int]:
    """What a transaction can take from its sender, per asset: fee plus amount (or attached value)."""
    transaction = envelope.transaction
    costs = {transaction.fee_asset: transaction.fee}
    body = transaction.body
    if isinstance(body, (Transfer, Withdraw)):
        costs[body.asset] = costs.get(body.asset, 0) + body.amount
    value_asset, value = attached_value_of(transaction)
    if value:
        costs[value_asset] = costs.get(value_asset, 0) + value
    return costs


@dataclass(slots=True)
class _Entry:
    envelope: Envelope
    added_ms: int


class Mempool:
    def __init__(self, txs_max: int = limits.mempool_txs_max, bytes_max: int = limits.mempool_bytes_max,
                 nonce_window: int = limits.nonce_window_max, clock_ms: Callable[[], int] | None = None) -> None:
        assert 0 < txs_max <= limits.mempool_txs_max and 0 < bytes_max <= limits.mempool_bytes_max
        self.txs_max = txs_max
        self.bytes_max = bytes_max
        self.nonce_window = nonce_window
        self._clock_ms = clock_ms or (lambda: int(time.monotonic() * 1000))
        self._by_sender: dict[bytes, dict[int, _Entry]] = {}
        self._arrival: dict[tuple[bytes, int], None] = {}  # insertion-ordered set
        self._hashes: set[bytes] = set()
        self._pending_costs: dict[bytes, dict[str, int]] = {}
        """sender -> asset -> what its pending transactions can take (fees + amounts)."""
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._arrival)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._hashes

    def pending_nonce(self, address: bytes, committed_nonce: int) -> int:
        """The nonce a sender's next new transaction should carry."""
        pending = self._by_sender.get(address)
        nonce = committed_nonce
        while pending and nonce in pending:
            nonce += 1
        return nonce

    def add(self, envelope: Envelope, state: State) -> None:
        """Admit `envelope` or raise InvalidTransaction naming why not."""
        transaction = envelope.transaction
        params = state.base.params
        if envelope.hash in self._hashes:
            raise InvalidTransaction("already_known", "transaction is already in the mempool")
        body_asset = getattr(transaction.body, "asset", transaction.fee_asset)
        value_asset = attached_value_of(transaction)[0] or transaction.fee_asset
        for asset_code in (transaction.fee_asset, body_asset, value_asset):
            if params.asset(asset_code) is None:
                raise InvalidTransaction("unknown_asset", f"asset {asset_code!r} is not defined in genesis")
        min_fee = required_fee(transaction, state.min_fee(transaction.fee_asset))
        if transaction.fee < min_fee:
            raise InvalidTransaction("fee_too_low", f"fee {transaction.fee} is below the minimum {min_fee}")
        account = state.account(envelope.sender)
        if transaction.nonce < account.nonce:
            raise InvalidTransaction("nonce_used", f"nonce {transaction.nonce} was already used (account nonce "
                                                   f"{account.nonce})")
        if transaction.nonce >= account.nonce + self.nonce_window:
            raise InvalidTransaction("nonce_too_far", f"nonce {transaction.nonce} is more than {self.nonce_window} "
                                                      f"ahead of the account nonce {account.nonce}")
        pending = self._by_sender.get(envelope.sender, {})
        if transaction.nonce in pending:
            raise InvalidTransaction("nonce_taken", f"another transaction with nonce {transaction.nonce} is pending "
                                                    "for this sender")
        if isinstance(transaction.body, (Transfer, Withdraw, RechargeRequest)) and account.role == 0:
            raise InvalidTransaction("not_registered", "sender is not a registered (KYC) account")
        self._check_funds(account, self._pending_costs.get(envelope.sender, {}), envelope)
        if len(self._arrival) >= self.txs_max or self.bytes + len(envelope.raw) > self.bytes_max:
            raise InvalidTransaction("mempool_full", "the mempool is full; retry later")
        self._insert(envelope)

    @staticmethod
    def _check_funds(account: Account, pending_costs: dict[str, int], envelope: Envelope) -> None:
        for asset, amount in costs_of(envelope).items():
            total = pending_costs.get(asset, 0) + amount
            if total > account.balance_of(asset):
                raise InvalidTransaction("insufficient_funds", f"balance {account.balance_of(asset)} {asset} cannot "
                                                               f"pay {total} for this and pending transactions")

    def _insert(self, envelope: Envelope) -> None:
        self._by_sender.setdefault(envelope.sender, {})[envelope.nonce] = _Entry(envelope, self._clock_ms())
        self._arrival[(envelope.sender, envelope.nonce)] = None
        self._hashes.add(envelope.hash)
        self.bytes += len(envelope.raw)
        totals = self._pending_costs.setdefault(envelope.sender, {})
        for asset, amount in costs_of(envelope).items():
            totals[asset] = totals.get(asset, 0) + amount

    def entries(self, count_max: int) -> list[tuple[Envelope, int]]:
        """Up to `count_max` (envelope, added_ms) in arrival order, for operators."""
        found = []
        for sender, nonce in self._arrival:
            if len(found) >= count_max:
                break
            entry = self._by_sender[sender][nonce]
            found.append((entry.envelope, entry.added_ms))
        return found

    def drop(self, tx_hash: bytes) -> bool:
        """Remove a transaction (and the later nonces of its sender, which could no longer run); True if found."""
        for sender, pending in list(self._by_sender.items()):
            for nonce, entry in list(pending.items()):
                if entry.envelope.hash == tx_hash:
                    for later in sorted(n for n in pending if n >= nonce):
                        self._remove(sender, later)
                    return True
        return False

    def _remove(self, sender: bytes, nonce: int) -> None:
        pending = self._by_sender[sender]
        entry = pending.pop(nonce)
        if not pending:
            del self._by_sender[sender]
        del self._arrival[(sender, nonce)]
        self._hashes.discard(entry.envelope.hash)
        self.bytes -= len(entry.envelope.raw)
        totals = self._pending_costs[sender]
        for asset, amount in costs_of(entry.envelope).items():
            totals[asset] -= amount
            assert totals[asset] >= 0
        if not pending:
            del self._pending_costs[sender]

    def waiting_since(self, age_ms_min: int, txs_max: int) -> list[bytes]:
        """Up to `txs_max` raw transactions, oldest first, that have waited at least `age_ms_min`."""
        deadline = self._clock_ms() - age_ms_min
        found: list[bytes] = []
        for sender, nonce in self._arrival:  # arrival order is time order
            entry = self._by_sender[sender][nonce]
            if entry.added_ms > deadline or len(found) >= txs_max:
                break
            found.append(entry.envelope.raw)
        return found

    def reap(self, state: State, txs_max: int, bytes_max: int) -> list[Envelope]:
        """Candidates for the next block: senders in arrival order, each with its run of consecutive nonces."""
        chosen: list[Envelope] = []
        size = 0
        seen: set[bytes] = set()
        for sender, _ in self._arrival:
            if sender in seen:
                continue
            seen.add(sender)
            pending = self._by_sender[sender]
            nonce = state.account(sender).nonce
            while nonce in pending:
                envelope = pending[nonce].envelope
                if len(chosen) >= txs_max or size + len(envelope.raw) > bytes_max:
                    return chosen
                chosen.append(envelope)
                size += len(envelope.raw)
                nonce += 1
        return chosen

    def update(self, state: State, senders: set[bytes], rejected: list[tuple[Envelope, str]] = ()) -> int:
        """After a commit: recheck `senders`, drop `rejected` and expired entries; returns how many left."""
        before = len(self._arrival)
        for envelope, _code in rejected:
            if envelope.hash in self._hashes:
                self._remove(envelope.sender, envelope.nonce)
        for sender in senders:
            self._recheck_sender(sender, state.account(sender))
        self._expire()
        return before - len(self._arrival)

    def _recheck_sender(self, sender: bytes, account: Account) -> None:
        pending = self._by_sender.get(sender)
        if not pending:
            return
        totals: dict[str, int] = {}
        for nonce in sorted(pending):
            envelope = pending[nonce].envelope
            if nonce < account.nonce:
                self._remove(sender, nonce)
                continue
            affordable = True
            for asset, amount in costs_of(envelope).items():
                totals[asset] = totals.get(asset, 0) + amount
                affordable = affordable and totals[asset] <= account.balance_of(asset)
            if not affordable:
                for later in [n for n in pending if n >= nonce]:
                    self._remove(sender, later)
                return

    def _expire(self) -> None:
        deadline = self._clock_ms() - mempool_tx_ttl_ms
        while self._arrival:
            sender, nonce = next(iter(self._arrival))  # the oldest: arrival order is time order
            if self._by_sender[sender][nonce].added_ms >= deadline:
                return
            self._remove(sender, nonce)
