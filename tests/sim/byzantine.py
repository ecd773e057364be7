"""Byzantine strategies for the simulator: how a lying validator or full node rewrites what its
(honest) code sends, and what it sends on its own on every attack tick.

A Byzantine node runs the real node code so it stays in step with the chain; its lies are built
from real material (its own key, real certificates it received, real blocks) — the most
convincing lies, the ones the checks must catch.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING

from node.consensus import driver as driver_module
from node.blocks import Block, Header, header_hash
from node.consensus.messages import (CertifiedBlock, Commit, NewView, PreparedCertificate, Prepare, PrePrepare,
                                     SignedMessage, Status, SyncRequest, SyncResponse, TxBatch, ViewChange,
                                     VoteSignature, encode_message, encode_service, sign_message)
from tests.support import keys

if TYPE_CHECKING:
    from tests.sim.simulator import SimNode, Simulator


class Strategy:
    """A node's lies: `rewrite` what its code sends, `attack` on every tick."""

    def __init__(self, sim: Simulator, node: SimNode, mode: str) -> None:
        self.sim = sim
        self.node = node
        self.mode = mode
        self.rng = random.Random(sim.seed * 7919 + node.slot)
        self.sent_history: list[tuple[bytes, bytes]] = []
        self.alternatives: dict[bytes, bytes] = {}
        self.claimed_height = 0

    @property
    def chain_id(self) -> str:
        return self.sim.genesis.params.chain_id

    @property
    def domain(self):
        return self.sim.genesis.signing_domain

    def sign(self, message) -> bytes:
        return encode_message(sign_message(self.node.keys, self.domain, self.node.driver.replica.index or 0,
                                           message))

    # --- rewriting what the honest code sends -----------------------------------------------

    def rewrite(self, target: bytes, data: bytes) -> list[tuple[bytes, bytes]]:
        decoded = driver_module.decode_frame(data)  # memoized during a run (see simulator.memoized_crypto)
        if self.mode in ("sync_liar", "forged_sync") and isinstance(decoded, (Status, SyncResponse)):
            return []  # its own Status and answers are replaced by lies on the attack tick
        if not isinstance(decoded, SignedMessage) or self.mode in ("twins", "tx_spam", "sync_liar", "forged_sync"):
            return [(data, target)]
        handler = getattr(self, f"_rewrite_{self.mode}", None)
        return handler(target, data, decoded) if handler is not None else [(data, target)]

    def _rewrite_withhold(self, target, data, signed):
        return [] if isinstance(signed.message, (Prepare, Commit, ViewChange)) else [(data, target)]

    def _rewrite_bad_signature(self, target, data, signed):
        return [(encode_message(dataclasses.replace(signed, signature=bytes(64))), target)]

    def _rewrite_replay(self, target, data, signed):
        self.sent_history.append((target, data))
        if len(self.sent_history) > 512:
            del self.sent_history[:256]
        _, old = self.rng.choice(self.sent_history)
        return [(data, target), (old, target)]

    def _rewrite_equivocate(self, target, data, signed):
        message = signed.message
        odd = self.sim.index_of(target) % 2 == 1
        if isinstance(message, PrePrepare) and odd:
            header = dataclasses.replace(message.block.header, timestamp_ms=message.block.header.timestamp_ms + 1)
            self.alternatives[header_hash(message.block.header)] = header_hash(header)
            return [(self.sign(PrePrepare(message.height, message.view, Block(header, message.block.transactions))),
                     target)]
        if isinstance(message, (Prepare, Commit)) and odd and message.block_hash in self.alternatives:
            return [(self.sign(dataclasses.replace(message, block_hash=self.alternatives[message.block_hash])),
                     target)]
        return [(data, target)]

    def _rewrite_forge_view_change(self, target, data, signed):
        message = signed.message
        if isinstance(message, NewView):  # too few distinct signers: one view change listed three times
            return [(self.sign(dataclasses.replace(message, view_changes=message.view_changes[:1] * 3)), target)]
        if isinstance(message, ViewChange):  # a certificate "signed" thrice by this validator for its own block
            fake = Block(dataclasses.replace(_empty_header(self.chain_id, message.height),
                                             proposer=self.node.keys.address), ())
            fake_hash = header_hash(fake.header)
            vote = sign_message(self.node.keys, self.domain, signed.validator_index, Prepare(message.height, 0,
                                                                                               fake_hash))
            certificate = PreparedCertificate(message.height, 0, fake_hash,
                                              (VoteSignature(signed.validator_index, vote.signature),) * 3)
            return [(self.sign(dataclasses.replace(message, prepared=certificate, prepared_block=fake)), target)]
        return [(data, target)]

    def _rewrite_outsider(self, target, data, signed):
        fake = sign_message(keys("outsider"), self.domain, signed.validator_index, signed.message)
        return [(data, target), (encode_message(fake), target)]

    def _rewrite_view_change_liar(self, target, data, signed):
        message = signed.message
        if not isinstance(message, ViewChange):
            return [(data, target)]
        lie = self.lying_view_change(message)
        return [(self.sign(lie), target)]

    def lying_view_change(self, message: ViewChange) -> ViewChange:
        """Drop the certificate, or keep it and shorten or swap the body it certifies."""
        choice = self.rng.randrange(3)
        if message.prepared is None or choice == 0:
            return dataclasses.replace(message, prepared=None, prepared_block=None)
        block = message.prepared_block
        if choice == 1 or not block.transactions:
            body = block.transactions[:-1] if block.transactions else (b"\x00",)
        else:
            body = tuple(reversed(block.transactions))
        return dataclasses.replace(message, prepared_block=Block(block.header, body))

    # --- attacks on every tick ----------------------------------------------------------------

    def attack(self) -> None:
        handler = getattr(self, f"_attack_{self.mode}", None)
        if handler is not None:
            handler()

    def _send_all(self, data: bytes) -> None:
        for target in self.sim.all_public_keys():
            if target != self.node.keys.public_key:
                self.sim.deliver_raw(self.node, target, data)

    def _attack_future_flood(self) -> None:
        replica = self.node.driver.replica
        if replica.index is None:
            return
        height = replica.height
        for _ in range(4):
            view = replica.view + self.rng.randrange(0, 60)
            junk = self.rng.randbytes(32)
            self._send_all(self.sign(Prepare(height, view, junk)))
            self._send_all(self.sign(Commit(height, view, junk)))
        early = ViewChange(height, replica.view + self.rng.randrange(1, 40), None, None)
        prepared = replica.round.prepared
        if prepared is not None:  # the real certificate, early, with a shortened body: the halt attack
            early = self.lying_view_change(dataclasses.replace(early, prepared=prepared[0],
                                                               prepared_block=prepared[1]))
        if early.prepared is None or early.prepared.view < early.new_view:
            self._send_all(self.sign(early))

    def _attack_view_change_liar(self) -> None:
        if self.rng.random() < 0.3:
            self._attack_future_flood()

    def _attack_sync_liar(self) -> None:
        self.claimed_height = max(self.claimed_height, self.node.ledger.head.height) + self.rng.randrange(1, 50)
        self._send_all(encode_service(Status(self.claimed_height, 0)))

    def _attack_forged_sync(self) -> None:
        """Status a little ahead, and certified blocks with forged bodies, asked for or not."""
        head = self.node.ledger.head.height
        self._send_all(encode_service(Status(head + 3, 0)))
        forged = self.forged_blocks(max(1, head - self.rng.randrange(0, 4)), 3)
        if forged:
            self._send_all(encode_service(SyncResponse(tuple(forged))))

    def answer_sync(self, request: SyncRequest) -> bytes | None:
        """A forged answer to a sync request (forged_sync), or nothing (sync_liar)."""
        if self.mode != "forged_sync":
            return None
        forged = self.forged_blocks(request.from_height, request.count)
        return encode_service(SyncResponse(tuple(forged))) if forged else None

    def forged_blocks(self, from_height: int, count: int) -> list[CertifiedBlock]:
        """Real headers and certificates this node holds, with bodies that are not theirs."""
        forged = []
        for height in range(from_height, from_height + min(count, 4)):
            certified = self.node.ledger.certified_block(height)
            if certified is None:
                break
            block, certificate = certified
            body = block.transactions[1:] if block.transactions else (self.rng.randbytes(120),)
            forged.append(CertifiedBlock(Block(block.header, body), certificate))
        return forged

    def _attack_tx_spam(self) -> None:
        junk = tuple(self.rng.randbytes(self.rng.randrange(1, 300)) for _ in range(8))
        self._send_all(encode_service(TxBatch(junk)))


def _empty_header(chain_id: str, height: int) -> Header:
    return Header(chain_id, height, 0, bytes(32), bytes(20), 0, 0, bytes(32), bytes(32), bytes(32))

