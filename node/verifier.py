"""Signature verification of transaction batches on worker threads.

libsodium releases the GIL while it verifies, so a batch split across threads uses the
machine's other cores while the event loop keeps executing blocks and serving RPC.
Decoding stays on the caller's thread (it is Python and holds the GIL anyway).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from node.transactions import Envelope, InvalidTransaction, open_transaction, verify_envelope

verify_chunk_txs_min = 64
"""Smaller batches are verified inline: a thread hop costs more than a few verifications."""


class BatchVerifier:
    def __init__(self, chain_id: str, workers: int = 2) -> None:
        assert 1 <= workers <= 16
        self.chain_id = chain_id
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify")

    async def open_many(self, raws: Sequence[bytes]) -> list[Envelope | InvalidTransaction]:
        """Decode every transaction, verify signatures in parallel; an entry per input, in order."""
        opened: list[Envelope | InvalidTransaction] = []
        for raw in raws:
            try:
                opened.append(open_transaction(raw, self.chain_id, verify_signature=False))
            except InvalidTransaction as error:
                opened.append(error)
        candidates = [e for e in opened if isinstance(e, Envelope)]
        if len(candidates) < verify_chunk_txs_min:
            valid = [verify_envelope(e, self.chain_id) for e in candidates]
        else:
            size = -(-len(candidates) // self.workers)
            chunks = [candidates[i:i + size] for i in range(0, len(candidates), size)]
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(*(loop.run_in_executor(self._pool, self._verify_all, c) for c in chunks))
            valid = [ok for chunk in results for ok in chunk]
        verdicts = iter(valid)
        return [entry if not isinstance(entry, Envelope) or next(verdicts) else
                InvalidTransaction("bad_signature", "signature does not verify for the sender's key and chain id")
                for entry in opened]

    def _verify_all(self, envelopes: list[Envelope]) -> list[bool]:
        return [verify_envelope(e, self.chain_id) for e in envelopes]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
