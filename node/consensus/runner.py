"""Runs the PBFT driver inside the node's asyncio loop, over a `Network`.

One task owns consensus: it takes frames and peer events from the network's bounded queue
and hands them to the driver; timers are loop callbacks that call back into the same driver
on the same thread, so the core's state is only ever touched from the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Sequence

from node import crypto
from node.application import Application
from node.consensus.core import Replica
from node.consensus.driver import Driver, FailStop
from node.consensus.wal import VoteLog
from node.consensus.messages import SignedMessage, TxBatch
from node.transactions import transaction_hash
from node.p2p.network import Network, PeerEvent, Received
from node.verifier import BatchVerifier

log = logging.getLogger("paychain.consensus")

forwarded_batches_queued_max = 256
"""Forwarded transaction batches waiting for verification; beyond it they are dropped (counted) —
the validator that admitted them still has them."""
status_interval_ms = 1_000
"""How often a validator tells its peers its height (so a node that is behind starts block sync)."""


class NetworkTransport:
    """The driver's transport over a `Network`: consensus broadcasts reach validators only."""

    def __init__(self, network: Network, validator_keys: Sequence[bytes], own_key: bytes | None) -> None:
        self.network = network
        self.own_key = own_key
        self.validators: tuple[bytes, ...] = ()
        self.set_validators(validator_keys)

    def set_validators(self, validator_keys: Sequence[bytes]) -> None:
        self.validators = tuple(key for key in validator_keys if key != self.own_key)

    def send(self, peer: bytes, data: bytes) -> None:
        if peer != self.own_key:
            self.network.send(peer, data)

    def broadcast(self, data: bytes) -> None:
        for peer in self.validators:
            self.network.send(peer, data)


class LoopTimers:
    """The driver's timers as event-loop callbacks; setting a timer again replaces it."""

    def __init__(self) -> None:
        self.driver: Driver | None = None
        self.on_fail_stop: Callable[[FailStop], None] = _raise
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def set(self, name: str, delay_ms: int, height: int, view: int) -> None:
        previous = self._handles.pop(name, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        self._handles[name] = loop.call_later(delay_ms / 1000, self._fire, name, height, view)

    def _fire(self, name: str, height: int, view: int) -> None:
        self._handles.pop(name, None)
        assert self.driver is not None
        try:
            self.driver.on_timer(name, height, view)
        except FailStop as failure:  # a loop callback's exception would only be logged: stop the runner
            self.on_fail_stop(failure)

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()


class PbftRunner:
    def __init__(self, app: Application, network: Network, keys: crypto.KeyPair | None, wal: VoteLog,
                 base_timeout_ms: int = 1_000, verifier: BatchVerifier | None = None,
                 full_node_keys: Sequence[bytes] = (), full_node_peers: Sequence[tuple[bytes, str]] = ()) -> None:
        """`keys` not among the validators (or None): a non-voting full node. `full_node_peers` are the
        allowlisted full nodes as (public key, address), kept in the peer set when validators change."""
        validator_keys = app.validator_keys
        own_index = validator_keys.index(keys.public_key) if keys and keys.public_key in validator_keys else None
        self.app = app
        self.network = network
        replica = Replica(own_index, keys, app.signing_domain, validator_keys, app.head.height + 1,
                          base_timeout_ms=base_timeout_ms, persisted=wal.replay())
        self.timers = LoopTimers()
        self.transport = NetworkTransport(network, validator_keys, keys.public_key if keys else None)
        self.driver = Driver(replica, app, self.transport, self.timers, wal, lambda: int(time.time() * 1000), keys,
                             full_node_keys=full_node_keys)
        self.driver.on_committed = self._follow_validator_changes
        self._full_nodes = tuple(full_node_peers)
        self._peers = self.peer_addresses()
        self.timers.driver = self.driver
        self.timers.on_fail_stop = self._fail_stop
        self._failure: asyncio.Future[None] | None = None
        self.wal = wal
        self.verifier = verifier
        self._forwarded: asyncio.Queue = asyncio.Queue(forwarded_batches_queued_max)

    def notify(self, admitted: Sequence[bytes] = ()) -> None:
        """Transactions were admitted through RPC: forward them and tell consensus there is work."""
        try:
            if admitted:
                self.driver.forward(admitted)
            self.driver.work_changed()
        except FailStop as failure:
            self._fail_stop(failure)
            raise

    def _fail_stop(self, failure: FailStop) -> None:
        """Stop consensus (and with it the node): `run` raises `failure`."""
        log.critical("fail-stop: %s", failure)
        if self._failure is not None and not self._failure.done():
            self._failure.set_exception(failure)

    def info(self) -> dict[str, Any]:
        replica = self.driver.replica
        primary = replica.primary(replica.height, replica.view)
        return {
            "mode": "pbft" if self.driver.replica.index is not None else "full-node",
            "view": replica.view,
            "view_changing": replica.view_changing,
            "primary": crypto.format_address(crypto.address_from_public_key(replica.validator_keys[primary])),
            "peers": [{"public_key": "0x" + p.public_key.hex(), "address": p.address, "connected": p.connected,
                       "last_seen_ms": p.last_seen_ms, "height": self.driver.peer_heights.get(p.public_key)}
                      for p in self.network.peers()],
            "syncing": self.syncing,
            "dropped": {**replica.dropped, **self.driver.stats.dropped},
            "messages_out": self.driver.stats.messages_out,
            "bytes_out": self.driver.stats.bytes_out,
            "p2p": self.network.stats(),
        }

    def peer_addresses(self) -> tuple[tuple[bytes, str], ...]:
        """Everyone to connect to: current and scheduled validators (see Ledger.known_validators), full nodes."""
        peers = tuple((v.public_key, v.p2p_address) for v in self.app.known_validators)
        return tuple(dict(self._full_nodes + peers).items())  # a full node made validator: listed once

    def _follow_validator_changes(self) -> None:
        """After a commit: a validator-set change scheduled or begun changes whom we send to and connect to."""
        self.transport.set_validators(self.app.validator_keys)
        peers = self.peer_addresses()
        if peers == self._peers:
            return
        self._peers = peers
        log.info("peer set changes: %d validator(s) and full node(s)", len(peers))
        try:
            self.network.update_peers(peers)
        except ValueError:  # runs inside the commit: log it, never break the commit that triggered it
            log.exception("the transport refused the new peer set; keeping the previous one")

    @property
    def syncing(self) -> bool:
        """True while some peer reports a height this node has not reached (by more than one block)."""
        return max(self.driver.peer_heights.values(), default=0) > self.app.head.height + 1

    async def run(self) -> None:
        """Run consensus until cancelled; raises FailStop if storage fails (the node must stop)."""
        self._failure = asyncio.get_running_loop().create_future()
        self.driver.start()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._receive())
                group.create_task(self._admit_forwarded())
                group.create_task(self._tick())
                group.create_task(self._until_fail_stop())
        finally:
            self.timers.cancel_all()
            close = getattr(self.wal, "close", None)
            if close is not None:
                close()

    async def _until_fail_stop(self) -> None:
        assert self._failure is not None
        await self._failure

    async def _receive(self) -> None:
        while True:
            item = await self.network.receive()
            try:
                if isinstance(item, Received):
                    self._on_frame(item.sender, item.message)
                elif isinstance(item, PeerEvent) and item.connected:
                    self.driver.on_peer_connected(item.public_key)
            except FailStop:
                raise
            except Exception:  # a bug in handling one frame must not stop consensus: log it loudly, drop the frame
                log.exception("consensus failed to handle a frame")
                self.driver.count_drop("handler_error")

    def _on_frame(self, sender: bytes, data: bytes) -> None:
        message = self.driver.decode_frame(data)
        if message is None:
            return
        if isinstance(message, TxBatch):
            # Forwarded again (see Driver.on_tick) or already here from a client: verify only what is new.
            fresh = tuple(raw for raw in message.transactions if not self.app.has_transaction(transaction_hash(raw)))
            if not fresh:
                return
            message = TxBatch(fresh)
        if isinstance(message, TxBatch) and self.verifier is not None:
            # Verifying forwarded transactions is the heaviest work a replica does: it goes to the
            # worker processes, off the task that runs consensus.
            try:
                self._forwarded.put_nowait(message)
            except asyncio.QueueFull:
                self.driver.count_drop("forwarded_batch_queue_full")
            return
        if isinstance(message, SignedMessage):
            self.driver.on_signed(message)
        else:
            self.driver.on_service(sender, message)

    async def _admit_forwarded(self) -> None:
        while True:
            batch = await self._forwarded.get()
            opened = await self.verifier.open_many(batch.transactions)
            self.driver.admit_forwarded(batch, opened)  # may propose: a FailStop ends the runner

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(status_interval_ms / 1000)
            self.driver.on_tick()


def _raise(failure: FailStop) -> None:
    raise failure
