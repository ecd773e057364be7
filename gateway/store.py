"""The gateway's own records in LevelDB (plyvel): payments, idempotency keys, webhook deliveries, sales figures.

These are the gateway's bookkeeping, not consensus data, so values are JSON; every key is made
here and nowhere else. Each change is one atomic, synced write batch. Requests that must not be
answered before their write is on disk (creating a payment) use `commit`: the writes of every
request of one event-loop turn go to disk in one synced batch (group commit), so a burst of
requests shares one fsync instead of queueing behind one each. Until that batch is written,
`get` reads the waiting values, so a read-modify-write (the day's sales figures) never misses one.

    p/<payment id>                                   payment record
    m/<merchant>/<created µs, 20 digits>/<id>        a merchant's payments, oldest first (listing, paging)
    open/<payment id>                                payments not yet final (reconciliation after a lost feed)
    live/<payment id>                                payments with an on-chain order not yet final (reconciliation)
    sub/<payment id>                                 payments whose transaction was sent, not yet in a block
    exp/<expires µs, 20 digits>/<payment id>         payable payments by expiry time (expiry sweep)
    i/<merchant>/<idempotency key>                   {request_hash, payment_id}
    t/<tx hash>                                      payment id of a submitted transaction
    o/<order id>                                     payment id of an on-chain order
    d/<delivery id>                                  webhook delivery record
    dm/<merchant>/<created µs>/<delivery id>         a merchant's delivery log
    due/<due µs, 20 digits>/<delivery id>            deliveries waiting for their next attempt
    r/<tx hash>                                      recharge submitted through the recharge page
    rq/<tx hash>                                     recharges the gateway still has to post (auto-confirm)
    a/<merchant>/<day>                               that day's sales figures (see gateway/analytics.py)
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any, Iterator

from node.storage.kv import KeyValueStore, LevelDbStore, MemoryStore

Record = dict[str, Any]


def _encode(record: Record) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def _decode(raw: bytes) -> Record:
    return json.loads(raw)


def _value_bytes(value: Record | str) -> bytes:
    return value.encode() if isinstance(value, str) else _encode(value)


def _micros_key(micros: int) -> str:
    return f"{micros:020d}"


def payment_key(payment_id: str) -> bytes:
    return b"p/" + payment_id.encode()


def merchant_payment_key(merchant: str, created_us: int, payment_id: str) -> bytes:
    return f"m/{merchant}/{_micros_key(created_us)}/{payment_id}".encode()


def open_key(payment_id: str) -> bytes:
    return b"open/" + payment_id.encode()


def live_order_key(payment_id: str) -> bytes:
    return b"live/" + payment_id.encode()


def submitted_key(payment_id: str) -> bytes:
    return b"sub/" + payment_id.encode()


def expiry_key(expires_at: float, payment_id: str) -> bytes:
    return f"exp/{_micros_key(int(expires_at * 1e6))}/{payment_id}".encode()


def recharge_queue_key(tx_hash: str) -> bytes:
    return b"rq/" + tx_hash.encode()


def idempotency_key(merchant: str, key: str) -> bytes:
    return f"i/{merchant}/".encode() + key.encode()


def tx_key(tx_hash: str) -> bytes:
    return b"t/" + tx_hash.encode()


def order_key(order_id: str) -> bytes:
    return b"o/" + order_id.encode()


def delivery_key(delivery_id: str) -> bytes:
    return b"d/" + delivery_id.encode()


def merchant_delivery_key(merchant: str, created_us: int, delivery_id: str) -> bytes:
    return f"dm/{merchant}/{_micros_key(created_us)}/{delivery_id}".encode()


def due_key(due_us: int, delivery_id: str) -> bytes:
    return f"due/{_micros_key(due_us)}/{delivery_id}".encode()


def recharge_key(tx_hash: str) -> bytes:
    return b"r/" + tx_hash.encode()


def sales_key(merchant: str, day: str) -> bytes:
    return f"a/{merchant}/{day}".encode()


class GatewayStore:
    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv
        self._waiting: dict[bytes, bytes | None] = {}
        """Writes of `commit` calls not yet on disk (None: a delete), in the order they were made."""
        self._waiters: list[asyncio.Future] = []
        self.group_commits = 0
        """Synced batches written by `commit` (with `committed_writes`: how well requests were grouped)."""
        self.committed_writes = 0

    @classmethod
    def open(cls, path: Path) -> "GatewayStore":
        return cls(LevelDbStore(path))

    @classmethod
    def in_memory(cls) -> "GatewayStore":
        return cls(MemoryStore())

    def close(self) -> None:
        self._flush()
        self.kv.close()

    def _raw(self, key: bytes) -> bytes | None:
        if key in self._waiting:
            return self._waiting[key]
        return self.kv.get(key)

    def get(self, key: bytes) -> Record | None:
        raw = self._raw(key)
        return None if raw is None else _decode(raw)

    def get_text(self, key: bytes) -> str | None:
        raw = self._raw(key)
        return None if raw is None else raw.decode()

    def write(self, puts: list[tuple[bytes, Record | str]], deletes: list[bytes] = ()) -> None:
        """Write now (after any waiting group commit, so writes reach the disk in the order they were made)."""
        self._flush()
        self.kv.write([(key, _value_bytes(value)) for key, value in puts], deletes)

    async def commit(self, puts: list[tuple[bytes, Record | str]], deletes: list[bytes] = ()) -> None:
        """Write as part of this event-loop turn's group commit; returns once the batch is on disk."""
        for key, value in puts:
            self._waiting[key] = _value_bytes(value)
        for key in deletes:
            self._waiting[key] = None
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        await waiter

    def _flush(self) -> None:
        if not self._waiters:
            return
        waiting, waiters = self._waiting, self._waiters
        self._waiting, self._waiters = {}, []
        try:
            self.kv.write([(k, v) for k, v in waiting.items() if v is not None],
                          [k for k, v in waiting.items() if v is None])
        except Exception as error:  # every request of the batch learns that its write failed
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            return
        self.group_commits += 1
        self.committed_writes += len(waiters)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- payments ------------------------------------------------------------------------------

    def payment(self, payment_id: str) -> Record | None:
        return self.get(payment_key(payment_id))

    def payment_by_tx(self, tx_hash: str) -> Record | None:
        payment_id = self.get_text(tx_key(tx_hash))
        return None if payment_id is None else self.payment(payment_id)

    def payment_by_order(self, order_id: str) -> Record | None:
        payment_id = self.get_text(order_key(order_id))
        return None if payment_id is None else self.payment(payment_id)

    def merchant_payments(self, merchant: str, after: str | None) -> Iterator[tuple[str, Record]]:
        """(cursor, payment) pairs of a merchant's payments, newest first, after the cursor `after`."""
        prefix = f"m/{merchant}/".encode()
        for key, _ in self._iterate_after(prefix, after):
            payment_id = key.rsplit(b"/", 1)[1].decode()
            record = self.payment(payment_id)
            assert record is not None, f"index entry without payment {payment_id}"
            yield key[len(prefix):].decode(), record

    def open_payment_ids(self) -> Iterator[str]:
        for key, _ in self.kv.iterate(b"open/"):
            yield key[len(b"open/"):].decode()

    def live_order_payment_ids(self, after: str | None, limit: int) -> list[str]:
        """Payments with a non-final on-chain order, in id order, after `after` (for paging through all)."""
        found = []
        for key, _ in self.kv.iterate(b"live/"):
            payment_id = key[len(b"live/"):].decode()
            if after is not None and payment_id <= after:
                continue
            found.append(payment_id)
            if len(found) >= limit:
                break
        return found

    def submitted_payment_ids(self, limit: int) -> list[str]:
        return [key[len(b"sub/"):].decode() for key, _ in itertools.islice(self.kv.iterate(b"sub/"), limit)]

    def expired_payment_ids(self, now: float, limit: int) -> list[str]:
        stop = f"exp/{_micros_key(int(now * 1e6) + 1)}".encode()
        return [value.decode() for _, value in itertools.islice(self.kv.iterate(b"exp/", stop=stop), limit)]

    def queued_recharges(self, limit: int) -> list[str]:
        return [key[len(b"rq/"):].decode() for key, _ in itertools.islice(self.kv.iterate(b"rq/"), limit)]

    # --- webhook deliveries ----------------------------------------------------------------------

    def delivery(self, delivery_id: str) -> Record | None:
        return self.get(delivery_key(delivery_id))

    def due_deliveries(self, now_us: int, limit: int) -> list[tuple[bytes, str]]:
        """(due key, delivery id) of deliveries due by `now_us`, earliest first, at most `limit`."""
        found = []
        for key, value in self.kv.iterate(b"due/", stop=f"due/{_micros_key(now_us + 1)}".encode()):
            found.append((key, value.decode()))
            if len(found) >= limit:
                break
        return found

    def merchant_deliveries(self, merchant: str, after: str | None) -> Iterator[tuple[str, Record]]:
        prefix = f"dm/{merchant}/".encode()
        for key, value in self._iterate_after(prefix, after):
            record = self.delivery(value.decode())
            assert record is not None
            yield key[len(prefix):].decode(), record

    # --- sales figures ---------------------------------------------------------------------------

    def sales_days(self, merchant: str, first_day: str, last_day: str) -> Iterator[tuple[str, Record]]:
        prefix = f"a/{merchant}/".encode()
        stop = sales_key(merchant, last_day) + b"\x00"
        for key, value in self.kv.iterate(prefix, stop=stop):
            day = key[len(prefix):].decode()
            if day >= first_day:
                yield day, _decode(value)

    def _iterate_after(self, prefix: bytes, after: str | None) -> Iterator[tuple[bytes, bytes]]:
        """Keys under `prefix`, newest (largest) first, strictly before the cursor `after` if given."""
        stop = None if after is None else prefix + after.encode()
        yield from self.kv.iterate(prefix, reverse=True, stop=stop)
