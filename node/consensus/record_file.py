"""A durable append-only file of opaque records, and the one parser of its bytes.

This module owns the on-disk format that the consensus write-ahead log is built on, and the
rules that tell a crash from corruption:

    file   = header record*
    header = b"PAYCHAIN-WAL" version(1 byte, = 1)                         13 bytes
    record = marker(4) length(4, big-endian) checksum(8) body(length)      16 + length bytes
    marker = b"\\xd7\\x1c\\x5a\\x93"
    checksum = BLAKE2b-64 (person b"paychain-wal") of length || body

A damaged record (bad marker, bad checksum, length above `body_bytes_max`, cut short) that no
valid record follows is a torn tail, the trace of a crash in the middle of an append: the
records before it are kept and the tail is truncated. A damaged record that a valid record
follows cannot come from a crash (appends are fsynced one after another), so it is corruption:
`LogCorrupted` is raised and nothing is deleted. The per-record marker is what lets the reader
find those later records.

The pure functions (`encode_header`, `frame_record`, `parse_log`) work without a file, so the
deterministic simulator parses its in-memory log with exactly the code the node uses.
`RecordFile` adds the file: fsync before returning, fsync of the directory after every
create and replace, and `StorageFailure` for every OS error (callers stop the process).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from node import encoding

log = logging.getLogger("paychain.record_file")

HEADER_MAGIC = b"PAYCHAIN-WAL"
FORMAT_VERSION = 1
HEADER_BYTES = len(HEADER_MAGIC) + 1

RECORD_MARKER = b"\xd7\x1c\x5a\x93"
"""Starts every record; not ASCII, so text inside a body rarely imitates it."""
LENGTH_BYTES = 4
CHECKSUM_BYTES = 8
RECORD_OVERHEAD_BYTES = len(RECORD_MARKER) + LENGTH_BYTES + CHECKSUM_BYTES
BODY_BYTES_LIMIT = 2 ** (8 * LENGTH_BYTES) - 1
"""Largest body the length field can describe; any `body_bytes_max` must stay at or below it."""


class LogCorrupted(Exception):
    """The log holds damage a crash cannot explain (or is not a log at all); the node must not start."""


class StorageFailure(Exception):
    """An OS error while reading or writing the log; the process must stop, not carry on unsure."""

    def __init__(self, path: Path, operation: str, error: OSError) -> None:
        super().__init__(f"{operation} of {path} failed: {error}")
        self.path = path
        self.operation = operation


@dataclass(frozen=True, slots=True)
class ParsedLog:
    records: tuple[bytes, ...]
    """Bodies of the valid records, in file order."""
    valid_length: int
    """Bytes from the start of the data through the last valid record. 0 means the data holds no
    complete header (a new log: write the header); less than the data's length means a torn tail
    follows (truncate to this length)."""


def encode_header() -> bytes:
    """The fixed bytes every log starts with."""
    return HEADER_MAGIC + encoding.encode_uint_be(FORMAT_VERSION, 1)


def frame_record(body: bytes) -> bytes:
    """The bytes appended to a log to hold `body`."""
    if len(body) > BODY_BYTES_LIMIT:
        raise ValueError(f"record body of {len(body)} bytes exceeds the format's {BODY_BYTES_LIMIT}")
    length_field = encoding.encode_uint_be(len(body), LENGTH_BYTES)
    return RECORD_MARKER + length_field + _checksum(length_field + body) + body


def parse_log(data: bytes | bytearray, body_bytes_max: int) -> ParsedLog:
    """The valid records of `data`, telling a torn tail (returned as a short `valid_length`)
    from corruption (raised as `LogCorrupted`)."""
    if len(data) < HEADER_BYTES:
        if encode_header().startswith(data):
            return ParsedLog((), 0)  # empty, or a crash while the header was written
        raise LogCorrupted(f"not a Paychain record log: {len(data)} bytes that do not start with {HEADER_MAGIC!r}")
    _check_header(data)
    records: list[bytes] = []
    offset = HEADER_BYTES
    while offset < len(data):  # bounded: each valid record moves offset forward by at least the overhead
        body = _record_at(data, offset, body_bytes_max)
        if body is None:
            _check_torn_tail(data, offset, body_bytes_max)
            break
        records.append(body)
        offset += RECORD_OVERHEAD_BYTES + len(body)
    assert HEADER_BYTES <= offset <= len(data)
    return ParsedLog(tuple(records), offset)


def _check_header(data: bytes | bytearray) -> None:
    magic, version = bytes(data[:len(HEADER_MAGIC)]), data[len(HEADER_MAGIC)]
    if magic != HEADER_MAGIC:
        raise LogCorrupted(f"not a Paychain record log: starts with {magic!r}, expected {HEADER_MAGIC!r}")
    if version != FORMAT_VERSION:
        raise LogCorrupted(f"record log format version {version} is unknown; this node reads version {FORMAT_VERSION}")


def _record_at(data: bytes | bytearray, offset: int, body_bytes_max: int) -> bytes | None:
    """The body of the record at `offset`, or None if there is no intact record there."""
    body_start = offset + RECORD_OVERHEAD_BYTES
    if body_start > len(data) or data[offset:offset + len(RECORD_MARKER)] != RECORD_MARKER:
        return None
    length_start = offset + len(RECORD_MARKER)
    length_field = bytes(data[length_start:length_start + LENGTH_BYTES])
    length = encoding.decode_uint_be(length_field)
    if length > body_bytes_max or body_start + length > len(data):
        return None
    body = bytes(data[body_start:body_start + length])
    if _checksum(length_field + body) != data[length_start + LENGTH_BYTES:body_start]:
        return None
    return body


def _check_torn_tail(data: bytes | bytearray, damaged_offset: int, body_bytes_max: int) -> None:
    """Raise LogCorrupted if any intact record lies after the damage at `damaged_offset`."""
    following = 0
    position = data.find(RECORD_MARKER, damaged_offset + 1)
    while position != -1:  # bounded: position only moves forward through data
        body = _record_at(data, position, body_bytes_max)
        if body is None:
            position = data.find(RECORD_MARKER, position + 1)
        else:
            following += 1
            position = data.find(RECORD_MARKER, position + RECORD_OVERHEAD_BYTES + len(body))
    if following:
        raise LogCorrupted(
            f"record log damaged at byte offset {damaged_offset}, yet {following} valid record(s) follow it: "
            f"this is corruption, not a torn tail from a crash; nothing was deleted")


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=CHECKSUM_BYTES, person=b"paychain-wal").digest()


@contextmanager
def _storage_operation(path: Path, operation: str) -> Iterator[None]:
    """Turn any OSError inside the block into a StorageFailure naming `path` and `operation`."""
    try:
        yield
    except OSError as error:
        raise StorageFailure(path, operation, error) from error


def _fsync_directory(directory: Path) -> None:
    """Make a created, renamed or truncated entry of `directory` survive a power loss."""
    with _storage_operation(directory, "fsync of directory"):
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _create_directories(directory: Path) -> None:
    """Create `directory` and its missing parents, each made durable in its own parent."""
    missing: list[Path] = []
    current = directory
    while not current.exists() and current != current.parent:  # bounded by the path's depth
        missing.append(current)
        current = current.parent
    for created in reversed(missing):
        with _storage_operation(created, "mkdir"):
            created.mkdir(exist_ok=True)
        _fsync_directory(created.parent)


def _write_all(handle: BinaryIO, data: bytes, path: Path) -> None:
    """Write all of `data` to an unbuffered handle; a raw write may write only part of it."""
    written = 0
    while written < len(data):  # bounded: each pass writes at least one byte or raises
        with _storage_operation(path, "write"):
            count = handle.write(data[written:])
        if not count:
            raise StorageFailure(path, "write", OSError(f"wrote nothing of {len(data) - written} bytes"))
        written += count


def _fsync(handle: BinaryIO, path: Path) -> None:
    with _storage_operation(path, "fsync"):
        os.fsync(handle.fileno())


def _replace_atomically(path: Path, content: bytes) -> None:
    """Make `content` the whole of `path`, all or nothing across a crash."""
    temporary = path.with_name(path.name + ".tmp")
    with _storage_operation(temporary, "open"):
        handle = open(temporary, "wb", buffering=0)
    with handle:
        _write_all(handle, content, temporary)
        _fsync(handle, temporary)
    with _storage_operation(path, "replace"):
        os.replace(temporary, path)
    _fsync_directory(path.parent)


def _read(path: Path) -> bytes:
    with _storage_operation(path, "read"):
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return b""


class RecordFile:
    """An open record log: `records` holds the bodies the file held when opened (`append` and
    `rewrite` leave it unchanged: the caller keeps its own view), then `append` and `rewrite`.

    After any StorageFailure the object refuses further writes: what reached the disk is
    unknown, and an fsync retried after a failure can report success for lost data.
    """

    def __init__(self, path: Path, body_bytes_max: int, records: tuple[bytes, ...],
                 handle: BinaryIO, size_bytes: int) -> None:
        """Use `RecordFile.open`."""
        self.path = path
        self.body_bytes_max = body_bytes_max
        self.records = records
        self._handle = handle
        self._size_bytes = size_bytes
        self._failed = False

    @classmethod
    def open(cls, path: Path, body_bytes_max: int) -> RecordFile:
        """Open the log at `path`, creating it if missing and truncating a torn tail.

        Raises LogCorrupted (the file is left untouched) or StorageFailure.
        """
        if not 0 <= body_bytes_max <= BODY_BYTES_LIMIT:
            raise ValueError(f"body_bytes_max {body_bytes_max} is outside 0..{BODY_BYTES_LIMIT}")
        path = Path(path)
        _create_directories(path.parent)
        data = _read(path)
        parsed = parse_log(data, body_bytes_max)
        if parsed.valid_length == 0:
            _replace_atomically(path, encode_header())
        with _storage_operation(path, "open"):
            handle = open(path, "ab", buffering=0)
        size_bytes = max(parsed.valid_length, HEADER_BYTES)
        if HEADER_BYTES <= parsed.valid_length < len(data):
            log.warning("record log %s: dropping a torn tail of %d bytes after %d records",
                        path, len(data) - parsed.valid_length, len(parsed.records))
            with _storage_operation(path, "truncate"):
                os.ftruncate(handle.fileno(), parsed.valid_length)
            _fsync(handle, path)
        return cls(path, body_bytes_max, parsed.records, handle, size_bytes)

    @property
    def size_bytes(self) -> int:
        """Bytes in the file: header plus every record."""
        return self._size_bytes

    def append(self, body: bytes) -> None:
        """Durably add one record: it is on disk when this returns."""
        self._check_writable()
        self._check_body(body)
        frame = frame_record(body)
        try:
            _write_all(self._handle, frame, self.path)
            _fsync(self._handle, self.path)
        except StorageFailure:
            self._failed = True
            raise
        self._size_bytes += len(frame)

    def rewrite(self, bodies: Iterable[bytes]) -> None:
        """Atomically replace the whole log with `bodies` (e.g. to drop records no longer needed)."""
        self._check_writable()
        kept = tuple(bodies)
        for body in kept:
            self._check_body(body)
        content = encode_header() + b"".join(frame_record(body) for body in kept)
        self._failed = True  # until the new file is in place and open again
        self._handle.close()
        _replace_atomically(self.path, content)
        with _storage_operation(self.path, "open"):
            self._handle = open(self.path, "ab", buffering=0)
        self._size_bytes = len(content)
        self._failed = False

    def close(self) -> None:
        """Release the file; every appended record is already durable."""
        self._handle.close()

    def _check_writable(self) -> None:
        if self._failed:
            raise StorageFailure(self.path, "write", OSError("an earlier storage operation failed"))
        if self._handle.closed:
            raise ValueError(f"record log {self.path} is closed")

    def _check_body(self, body: bytes) -> None:
        # A body the reader would call damage must never be written: it would stop the next start.
        if len(body) > self.body_bytes_max:
            raise ValueError(f"record body of {len(body)} bytes exceeds body_bytes_max {self.body_bytes_max}")
