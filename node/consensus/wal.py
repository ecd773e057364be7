"""The write-ahead log of what a validator must remember to stay safe across a crash.

It holds the core's `DurableRecord`s (node/consensus/core.py): own signed messages, the prepared
certificate with its block, and the end of each view change. The driver appends a record (and
the append is fsynced) before it carries out any later action, so nothing that depends on a
record leaves the node first; `Replica(persisted=log.replay())` restores that state at start.

Bytes on disk are `node/consensus/record_file.py` frames (a torn tail is truncated, corruption
followed by valid records refuses start-up). The log stays bounded while running: whenever it is
at least `wal_compact_bytes_min` and has doubled since it was last rewritten, it is rewritten with
only what a restart still needs (`compact`): records above the committed height, and at each
height the highest prepared certificate plus the records of the highest view (the core never
signs for a view it has left, so older views constrain nothing). Opening the log compacts it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterable, Protocol

from node import encoding, limits
from node.consensus.core import DurableRecord, record_height, record_view
from node.consensus.messages import MESSAGE_BYTES_MAX, PreparedState, SignedMessage, ViewEntered
from node.consensus.record_file import LogCorrupted, RecordFile, StorageFailure, frame_record, parse_log, \
    encode_header
from node.encoding import Tagged, check_schema

__all__ = ["FileVoteLog", "LogCorrupted", "MemoryVoteLog", "StorageFailure", "VoteLog", "compact"]


@check_schema
@dataclass(frozen=True, slots=True)
class WalEntry:
    SCHEMA: ClassVar = (Tagged({cls.TAG: cls for cls in (SignedMessage, PreparedState, ViewEntered)}),)
    record: DurableRecord


def encode_record(record: DurableRecord) -> bytes:
    return encoding.encode(WalEntry(record))


def decode_record(body: bytes) -> DurableRecord:
    """A record read back; a body that passed its checksum but does not decode is corruption."""
    try:
        return encoding.decode(WalEntry, body, MESSAGE_BYTES_MAX).record
    except encoding.DecodeError as error:
        raise LogCorrupted(f"write-ahead log record does not decode ({error}): written by another version, or "
                           "damaged; refusing to start") from error


def compact(records: Iterable[DurableRecord], committed_height: int) -> list[DurableRecord]:
    """What a restart after `committed_height` still needs, in the original order."""
    kept = [r for r in records if record_height(r) > committed_height]
    top_view: dict[int, int] = {}
    top_prepared: dict[int, PreparedState] = {}
    for record in kept:
        height = record_height(record)
        top_view[height] = max(top_view.get(height, 0), record_view(record))
        if isinstance(record, PreparedState) and (
                height not in top_prepared or top_prepared[height].certificate.view < record.certificate.view):
            top_prepared[height] = record
    return [r for r in kept if (top_prepared.get(record_height(r)) is r if isinstance(r, PreparedState)
                                else record_view(r) == top_view[record_height(r)])]


class VoteLog(Protocol):
    def append(self, record: DurableRecord) -> None:
        """Durably record `record` before returning (raise StorageFailure if that is not certain)."""

    def replay(self) -> list[DurableRecord]: ...

    def committed(self, height: int) -> None:
        """The chain reached `height`: records at or below it are no longer needed."""


class _CompactingLog:
    """The record list and the compaction policy shared by the file log and the simulator's log."""

    def __init__(self, records: list[DurableRecord], committed_height: int) -> None:
        self._records = compact(records, committed_height)
        self._committed_height = committed_height
        self._size_bytes = 0
        self._compact_at_bytes = limits.wal_compact_bytes_min
        if len(self._records) != len(records):
            self._rewrite()

    def append(self, record: DurableRecord) -> None:
        body = encode_record(record)
        self._append_body(body)
        self._records.append(record)
        self._size_bytes += len(body)
        if self._size_bytes >= self._compact_at_bytes:
            self._records = compact(self._records, self._committed_height)
            self._rewrite()

    def replay(self) -> list[DurableRecord]:
        return list(self._records)

    def committed(self, height: int) -> None:
        # Records of committed heights are harmless (a restart drops them): rewriting the log at every
        # commit would cost two more fsyncs per block, so they go at the next size-triggered compaction.
        self._committed_height = max(self._committed_height, height)
        if self._size_bytes >= self._compact_at_bytes:
            self._records = compact(self._records, self._committed_height)
            self._rewrite()

    def _rewrite(self) -> None:
        bodies = [encode_record(r) for r in self._records]
        self._rewrite_bodies(bodies)
        self._size_bytes = sum(map(len, bodies))
        self._compact_at_bytes = max(limits.wal_compact_bytes_min, 2 * self._size_bytes)

    def _append_body(self, body: bytes) -> None:
        raise NotImplementedError

    def _rewrite_bodies(self, bodies: list[bytes]) -> None:
        raise NotImplementedError


class FileVoteLog(_CompactingLog):
    """The node's log: `<home>/wal/votes.log`. Raises LogCorrupted or StorageFailure; both stop the node."""

    def __init__(self, path: Path, committed_height: int) -> None:
        self.path = Path(path)
        self._file = RecordFile.open(self.path, MESSAGE_BYTES_MAX)
        super().__init__([decode_record(body) for body in self._file.records], committed_height)

    def _append_body(self, body: bytes) -> None:
        self._file.append(body)

    def _rewrite_bodies(self, bodies: list[bytes]) -> None:
        self._file.rewrite(bodies)

    def close(self) -> None:
        self._file.close()


class MemoryVoteLog(_CompactingLog):
    """The simulator's log: the same bytes as the file, in memory, so the simulator can tear or corrupt
    them and replay goes through the node's own parser. It survives a simulated crash because the
    simulator keeps it."""

    def __init__(self) -> None:
        self.data = bytearray(encode_header())
        super().__init__([], 0)

    def reopen(self, committed_height: int) -> None:
        """What a restart does: parse the bytes (truncating a torn tail), then compact."""
        parsed = parse_log(self.data, MESSAGE_BYTES_MAX)
        if parsed.valid_length == 0:
            self.data = bytearray(encode_header())
        del self.data[max(parsed.valid_length, len(encode_header())):]
        _CompactingLog.__init__(self, [decode_record(body) for body in parsed.records], committed_height)

    def _append_body(self, body: bytes) -> None:
        self.data += frame_record(body)

    def _rewrite_bodies(self, bodies: list[bytes]) -> None:
        self.data = bytearray(encode_header() + b"".join(frame_record(body) for body in bodies))
