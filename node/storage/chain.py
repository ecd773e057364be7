"""The chain store: blocks with certificates, transaction index, account history, validator sets, state.

`commit_block` writes everything a block changes in one atomic, synced batch, so a
node killed at any moment restarts either before or after a block, never inside it.

Validator sets: the state keeps only the few sets execution still needs (`state.ValidatorEpochs`); the
store keeps every set the chain ever had, one entry per epoch written with the block that scheduled it,
so the set that certified any block stays answerable (`validators_at`) for verifying old certificates.
It grows by at most one entry per block that changes the set (each ≤ `VALIDATOR_EPOCH_BYTES_MAX`, a
few hundred bytes for a handful of validators), on disk only: nothing of it is held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterable, Iterator, Sequence

from node import encoding
from node.blocks import (BLOCK_ENCODING_BYTES_MAX, CERTIFICATE_BYTES_MAX, Block, ChainHead, CommitCertificate, Header,
                         Receipt, header_hash)
from node.encoding import HASH, U64, Bytes, Struct, UInt, check_schema
from node import limits
from node.genesis import Genesis
from node.state import (VALIDATOR_EPOCH_BYTES_MAX, VALIDATOR_EPOCHS_KEY, CommittedState, ValidatorEpoch,
                        ValidatorInfo, decode_record)
from node.storage import schema
from node.storage.kv import KeyValueStore, StoreError
from node.transactions import transaction_hash


@check_schema
@dataclass(frozen=True, slots=True)
class TxRecord:
    """Where a committed transaction is, its bytes and its receipt."""

    SCHEMA: ClassVar = (U64, UInt(limits.block_txs_max), Bytes(max_size=limits.tx_bytes_max), Struct(Receipt))
    height: int
    index: int
    raw: bytes
    receipt: Receipt


_TX_RECORD_BYTES_MAX = limits.tx_bytes_max + 8 * 1024


@dataclass(frozen=True, slots=True)
class CommitBatch:
    """A block's writes, prepared on the event loop and written in one atomic batch."""

    header: Header
    head: ChainHead
    puts: list[tuple[bytes, bytes]]
    deletes: list[bytes]


class ChainStore:
    """Chain data on a KeyValueStore; refuses a store made for another genesis or a newer format."""

    def __init__(self, kv: KeyValueStore, genesis: Genesis) -> None:
        self.kv = kv
        self.genesis = genesis
        self._check_or_initialise()
        self.head = encoding.decode(ChainHead, self._require(schema.META_HEAD), 256)
        self.head_header: Header | None = None if self.head.height == 0 else self.get_block(self.head.height).header

    def _require(self, key: bytes) -> bytes:
        value = self.kv.get(key)
        if value is None:
            raise StoreError(f"store is missing {key.decode(errors='replace')}: it is corrupt or half-initialised")
        return value

    def _check_or_initialise(self) -> None:
        stored_format = self.kv.get(schema.META_FORMAT)
        if stored_format is None:
            self._initialise()
            return
        version = encoding.decode_uint_be(stored_format)
        if version > schema.FORMAT_VERSION:
            raise StoreError(f"store format {version} is newer than this node understands ({schema.FORMAT_VERSION}); "
                             "upgrade the node")
        if version < schema.FORMAT_VERSION:
            raise StoreError(f"store format {version} is older than {schema.FORMAT_VERSION} and cannot be migrated")
        stored_genesis = self._require(schema.META_GENESIS)
        if stored_genesis != self.genesis.hash:
            chain_id = (self.kv.get(schema.META_CHAIN_ID) or b"?").decode(errors="replace")
            raise StoreError(f"store belongs to another chain ({chain_id!r}, genesis {stored_genesis.hex()[:16]}…), "
                             f"not {self.genesis.params.chain_id!r} (genesis {self.genesis.hash.hex()[:16]}…)")

    def _initialise(self) -> None:
        state = self.genesis.state()
        head = ChainHead(0, self.genesis.hash, state.root, self.genesis.params.genesis_time_ms)
        puts = [(schema.state_key(key), encoding.encode(record)) for key, record in self.genesis.records]
        genesis_epoch = ValidatorEpoch(0, self.genesis.params.validators)
        puts.append((schema.validator_epoch_key(0), encoding.encode(genesis_epoch)))
        puts += [
            (schema.META_GENESIS, self.genesis.hash),
            (schema.META_CHAIN_ID, self.genesis.params.chain_id.encode()),
            (schema.META_HEAD, encoding.encode(head)),
            (schema.META_FORMAT, encoding.encode_uint_be(schema.FORMAT_VERSION, 8)),  # last: marks it complete
        ]
        self.kv.write(puts)

    # --- state ---------------------------------------------------------------------------

    def load_state(self) -> CommittedState:
        """The committed state, rebuilt from the store and checked against the head's state root."""
        state = CommittedState(self.genesis.params, signing_domain=self.genesis.signing_domain)
        state.load((schema.state_key_from_store(key), value) for key, value in self.kv.iterate(schema.STATE_PREFIX))
        if state.root != self.head.state_root:
            raise StoreError(f"state in the store does not match the state root of block {self.head.height}: "
                             "the store is corrupt")
        return state

    # --- writing -------------------------------------------------------------------------

    def commit_block(self, block: Block, certificate: CommitCertificate, encoded_receipts: Sequence[bytes],
                     tx_hashes: Sequence[bytes], touched: Sequence[Iterable[bytes]],
                     state_changes: dict[bytes, bytes | None]) -> ChainHead:
        """Write a block and all it changes atomically (see `prepare_commit`)."""
        batch = self.prepare_commit(block, certificate, encoded_receipts, tx_hashes, touched, state_changes)
        self.write_commit(batch)
        return batch.head

    def prepare_commit(self, block: Block, certificate: CommitCertificate, encoded_receipts: Sequence[bytes],
                       tx_hashes: Sequence[bytes], touched: Sequence[Iterable[bytes]],
                       state_changes: dict[bytes, bytes | None],
                       new_orders: Sequence[tuple[int, bytes, bytes, bytes]] = ()) -> CommitBatch:
        """Everything a block changes, as one batch for `write_commit`.

        `encoded_receipts[i]` is tx i's encoded Receipt; `touched[i]` are the accounts tx i involved;
        `new_orders` are (tx index, order id, buyer, merchant) of the orders the block created.
        """
        header = block.header
        assert header.height == self.head.height + 1, (header.height, self.head.height)
        assert header.parent_hash == self.head.block_hash
        assert len(encoded_receipts) == len(block.transactions) == len(tx_hashes) == len(touched)
        block_hash = header_hash(header)
        head = ChainHead(header.height, block_hash, header.state_root, header.timestamp_ms)
        puts: list[tuple[bytes, bytes]] = [
            (schema.block_key(header.height), encoding.encode(block)),
            (schema.certificate_key(header.height), encoding.encode(certificate)),
            (schema.block_hash_key(block_hash), encoding.encode_uint_be(header.height, 8)),
        ]
        rows = zip(block.transactions, tx_hashes, encoded_receipts, touched)
        for index, (raw, tx_hash, receipt, accounts) in enumerate(rows):
            # == encoding.encode(TxRecord(height, index, raw, receipt)) without encoding the receipt twice
            record = encoding.pack_array_with_encoded_tail([header.height, index, raw], receipt)
            puts.append((schema.tx_key(tx_hash), record))
            for address in accounts:
                puts.append((schema.history_key(address, header.height, index), tx_hash))
        for index, order_id, buyer, merchant in new_orders:
            puts.append((schema.order_index_key(buyer, header.height, index), order_id))
            puts.append((schema.order_index_key(merchant, header.height, index), order_id))
        deletes = []
        for key, value in state_changes.items():
            if value is None:
                deletes.append(schema.state_key(key))
            else:
                puts.append((schema.state_key(key), value))
        epochs = state_changes.get(VALIDATOR_EPOCHS_KEY)
        if epochs is not None:
            puts += _scheduled_epochs(header.height, epochs)
        puts.append((schema.META_HEAD, encoding.encode(head)))
        return CommitBatch(header, head, puts, deletes)

    def write_commit(self, batch: CommitBatch) -> None:
        """The one durable write of a block; safe to run on a worker thread (nothing else writes)."""
        assert batch.head.height == self.head.height + 1
        self.kv.write(batch.puts, batch.deletes)
        self.head = batch.head
        self.head_header = batch.header

    # --- reading -------------------------------------------------------------------------

    def validators_at(self, height: int) -> tuple[ValidatorInfo, ...]:
        """The validator set that certifies block `height`: any committed height, or the next block's.

        One seek backwards from `height` to the latest epoch begun by then (genesis' set is the epoch at 0).
        Later heights are not answered: a block still to come may schedule a change for them.
        """
        assert 0 <= height <= self.head.height + 1, (height, self.head.height)
        stop = schema.validator_epoch_key(height + 1)
        for key, value in self.kv.iterate(schema.VALIDATORS_PREFIX, reverse=True, stop=stop):
            epoch = encoding.decode(ValidatorEpoch, value, VALIDATOR_EPOCH_BYTES_MAX)
            assert epoch.from_height == schema.validator_epoch_height(key) <= height
            return epoch.validators
        raise StoreError("store has no validator set of genesis: it is corrupt")

    def get_block(self, height: int) -> Block | None:
        data = self.kv.get(schema.block_key(height))
        return None if data is None else encoding.decode(Block, data, BLOCK_ENCODING_BYTES_MAX)

    def get_certificate(self, height: int) -> CommitCertificate | None:
        data = self.kv.get(schema.certificate_key(height))
        return None if data is None else encoding.decode(CommitCertificate, data, CERTIFICATE_BYTES_MAX)

    def height_of_block(self, block_hash: bytes) -> int | None:
        data = self.kv.get(schema.block_hash_key(block_hash))
        return None if data is None else encoding.decode_uint_be(data)

    def get_tx(self, tx_hash: bytes) -> TxRecord | None:
        data = self.kv.get(schema.tx_key(tx_hash))
        return None if data is None else encoding.decode(TxRecord, data, _TX_RECORD_BYTES_MAX)

    def get_receipts(self, height: int) -> list[Receipt]:
        block = self.get_block(height)
        if block is None:
            return []
        receipts = []
        for raw in block.transactions:
            record = self.get_tx(transaction_hash(raw))
            assert record is not None, "a committed transaction is indexed"
            receipts.append(record.receipt)
        return receipts

    def orders_of(self, party: bytes, before: tuple[int, int] | None) -> Iterator[tuple[int, int, bytes]]:
        """(height, tx index, order id) of orders `party` bought or sold, newest first (the caller bounds it)."""
        stop = None if before is None else schema.order_index_key(party, *before)
        for key, order_id in self.kv.iterate(schema.orders_prefix(party), reverse=True, stop=stop):
            height, index = schema.order_index_position(key)
            yield height, index, order_id

    def account_history(self, address: bytes, before: tuple[int, int] | None, limit: int
                        ) -> Iterator[tuple[int, int, bytes]]:
        """(height, index, tx hash) of transactions touching `address`, newest first."""
        assert 0 < limit <= limits.rpc_history_items_max
        stop = None if before is None else schema.history_key(address, *before)
        count = 0
        for key, tx_hash in self.kv.iterate(schema.history_prefix(address), reverse=True, stop=stop):
            height, index = schema.history_position(key)
            yield height, index, tx_hash
            count += 1
            if count >= limit:
                return


def _scheduled_epochs(height: int, encoded_epochs: bytes) -> list[tuple[bytes, bytes]]:
    """History entries for the validator sets block `height` scheduled (given the block's new epochs record).

    The record also holds the set in force and, possibly, sets scheduled by earlier blocks and already
    written: only epochs beginning after `height` can be new, and rewriting one is harmless.
    """
    record = decode_record(VALIDATOR_EPOCHS_KEY, encoded_epochs)
    scheduled = [epoch for epoch in record.epochs if epoch.from_height > height]
    assert scheduled, "a block that changes the validator epochs schedules one"
    return [(schema.validator_epoch_key(epoch.from_height), encoding.encode(epoch)) for epoch in scheduled]
