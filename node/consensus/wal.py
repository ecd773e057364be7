"""The write-ahead log of this validator's own consensus messages.

A record is appended and fsynced before the message it holds is sent. At start the log is
replayed into the core (`Replica(persisted=...)`), so a restarted validator re-sends what it
signed and never signs a different block for the same (height, view). Records of heights
below the committed one are dropped when the log is opened (it stays small).

File format: repeated [4-byte big-endian length][4-byte BLAKE2b checksum][encoded WalRecord];
a torn or corrupt tail (a crash mid-append) ends the replay and is truncated.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from node import encoding
from node.consensus.core import PersistVote
from node.consensus.messages import MESSAGE_BYTES_MAX, SignedMessage
from node.encoding import HASH, U64, Optional, Struct, Text, check_schema


@check_schema
@dataclass(frozen=True, slots=True)
class WalRecord:
    SCHEMA: ClassVar = (U64, U64, Text(16, ascii_only=True), Optional(HASH), Struct(SignedMessage))
    height: int
    view: int
    kind: str
    block_hash: bytes | None
    message: SignedMessage


class VoteLog(Protocol):
    def append(self, vote: PersistVote) -> None:
        """Durably record `vote` before returning."""

    def replay(self) -> list[PersistVote]: ...


def _record_of(vote: PersistVote) -> WalRecord:
    return WalRecord(vote.height, vote.view, vote.kind, vote.block_hash, vote.message)


def _vote_of(record: WalRecord) -> PersistVote:
    return PersistVote(record.height, record.view, record.kind, record.block_hash, record.message)


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=4).digest()


class FileVoteLog:
    def __init__(self, path: Path, committed_height: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records = [v for v in self._read() if v.height > committed_height]
        self._rewrite(records)
        self._records = records
        self._file = open(self.path, "ab", buffering=0)

    def _read(self) -> list[PersistVote]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        votes, offset = [], 0
        while offset + 8 <= len(data):
            length = encoding.decode_uint_be(data[offset:offset + 4])
            body = data[offset + 8:offset + 8 + length]
            if len(body) != length or _checksum(body) != data[offset + 4:offset + 8]:
                break  # torn tail from a crash mid-append: everything before it is intact
            try:
                votes.append(_vote_of(encoding.decode(WalRecord, body, MESSAGE_BYTES_MAX)))
            except encoding.DecodeError:
                break
            offset += 8 + length
        return votes

    def _rewrite(self, votes: list[PersistVote]) -> None:
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            for vote in votes:
                handle.write(_frame(vote))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def append(self, vote: PersistVote) -> None:
        self._file.write(_frame(vote))
        os.fsync(self._file.fileno())
        self._records.append(vote)

    def replay(self) -> list[PersistVote]:
        return list(self._records)

    def close(self) -> None:
        self._file.close()


def _frame(vote: PersistVote) -> bytes:
    body = encoding.encode(_record_of(vote))
    return encoding.encode_uint_be(len(body), 4) + _checksum(body) + body


class MemoryVoteLog:
    """The simulator's log: survives a simulated crash because the simulator keeps it."""

    def __init__(self) -> None:
        self.votes: list[PersistVote] = []

    def append(self, vote: PersistVote) -> None:
        # Round-trip through the encoding, as the file log does, so the simulator replays real bytes.
        self.votes.append(_vote_of(encoding.decode(WalRecord, encoding.encode(_record_of(vote)), MESSAGE_BYTES_MAX)))

    def replay(self) -> list[PersistVote]:
        return list(self.votes)
