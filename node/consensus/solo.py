"""Single-validator block production, through the same Application boundary PBFT uses.

With one validator the quorum is that validator: it proposes, validates and commits
its own block with a certificate holding its own signature. A block is produced when
transactions are pending, at most `block_txs_max` at a time, no sooner than
`block_interval_ms_min` after the previous commit (so that arrivals batch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Sequence

from node import blocks, crypto, limits
from node.application import Application
from node.blocks import CommitCertificate, CommitSignature, CommitVote

log = logging.getLogger("paychain.solo")


class SoloProducer:
    def __init__(self, app: Application, keys: crypto.KeyPair, block_interval_ms_min: int,
                 clock_ms: Callable[[], int] | None = None) -> None:
        validator_keys = app.validator_keys
        if validator_keys != (keys.public_key,):
            raise ValueError("single-validator mode needs a genesis whose only validator is this node's key "
                             f"(genesis has {len(validator_keys)} validators)")
        self.app = app
        self.keys = keys
        self.block_interval_s = block_interval_ms_min / 1000
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._work = asyncio.Event()
        self.view = 0

    def notify(self, admitted: Sequence[bytes] = ()) -> None:
        """Called when transactions were admitted: there is work to do."""
        self._work.set()

    async def run(self) -> None:
        while True:
            if not self.app.has_pending():
                self._work.clear()
                await self._work.wait()
            if await self.produce_block() == 0:
                # Pending transactions exist but none can go in yet (e.g. a nonce gap): wait for news.
                self._work.clear()
                try:
                    await asyncio.wait_for(self._work.wait(), limits.block_interval_ms_max / 1000)
                except TimeoutError:
                    pass
            # Yield to the RPC server between blocks and let arrivals batch up.
            await asyncio.sleep(self.block_interval_s)

    async def produce_block(self) -> int:
        """Propose, validate, certify and commit one block; returns its transaction count."""
        height = self.app.head.height + 1
        started = time.perf_counter()
        block = self.app.prepare_proposal(height, self.view, self.keys.address, self._clock_ms())
        if not block.transactions:
            return 0
        self.app.process_proposal(block)
        vote = CommitVote(height, self.view, blocks.header_hash(block.header))
        signature = blocks.sign_commit(self.keys, self.app.signing_domain, vote)
        certificate = CommitCertificate(height, self.view, vote.block_hash, (CommitSignature(0, signature),))
        await self.app.commit_async(block, certificate)
        log.info("committed block %d with %d txs in %.1f ms", height, len(block.transactions),
                 (time.perf_counter() - started) * 1000)
        return len(block.transactions)
