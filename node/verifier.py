"""Signature verification of transaction batches in worker processes.

Verifying is the largest single cost of admitting a transaction (~65 µs of ed25519 per
signature). Worker *threads* are not enough: libsodium releases the GIL, but every
verification also needs the GIL for a few microseconds, and while the event loop is busy
executing a block a waiting thread gets the GIL only once per switch interval (5 ms) —
measured here, batches then stalled behind block execution. Worker *processes* verify at
full speed on the other cores; only (public key, payload, signature) triples cross over.
Decoding stays on the caller's thread.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Sequence

from node import crypto
from node.transactions import Envelope, InvalidTransaction, bad_signature, open_transaction, signing_payload

worker_parent_check_s = 0.5
"""How often a worker checks that the node that started it is still alive."""
verify_chunk_txs_min = 64
"""Smaller batches are verified inline: crossing to a worker costs more than a few verifications."""


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the node is gone, even after `kill -9` of the node."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(worker_parent_check_s)
        os._exit(0)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def verify_triples(domain: crypto.SigningDomain, triples: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Runs in a worker: (public key, payload, signature) -> valid for the network `domain`?"""
    return [crypto.verify(public_key, domain, crypto.TAG_TRANSACTION, payload, signature)
            for public_key, payload, signature in triples]


class BatchVerifier:
    def __init__(self, domain: crypto.SigningDomain, workers: int = 2, processes: bool = True) -> None:
        assert 1 <= workers <= 16
        self.domain = domain
        self.workers = workers
        self._pool: Executor
        if processes:
            # spawn: a fresh interpreter that imports only what verification needs (no inherited loop or threads).
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=exit_with_parent, initargs=(os.getpid(),))
        else:
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify")

    async def open_many(self, raws: Sequence[bytes]) -> list[Envelope | InvalidTransaction]:
        """Decode every transaction, verify signatures in parallel; an entry per input, in order."""
        opened: list[Envelope | InvalidTransaction] = []
        for raw in raws:
            try:
                opened.append(open_transaction(raw, self.domain, verify_signature=False))
            except InvalidTransaction as error:
                opened.append(error)
        candidates = [e for e in opened if isinstance(e, Envelope)]
        triples = [(e.transaction.sender_public_key, signing_payload(e), e.signed.signature) for e in candidates]
        if len(triples) < verify_chunk_txs_min:
            valid = verify_triples(self.domain, triples)
        else:
            size = -(-len(triples) // self.workers)
            chunks = [triples[i:i + size] for i in range(0, len(triples), size)]
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(*(loop.run_in_executor(self._pool, verify_triples, self.domain, chunk)
                                             for chunk in chunks))
            valid = [ok for chunk in results for ok in chunk]
        verdicts = iter(valid)
        return [entry if not isinstance(entry, Envelope) or next(verdicts) else bad_signature() for entry in opened]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
