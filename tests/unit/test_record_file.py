"""The durable record file (node/consensus/record_file.py): real files, torn tails, corruption, fsync failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from node.consensus import record_file
from node.consensus.record_file import (
    HEADER_BYTES, RECORD_OVERHEAD_BYTES, LogCorrupted, RecordFile, StorageFailure,
    encode_header, frame_record, parse_log,
)

BODY_BYTES_MAX = 1_024
BODIES = [b"first", b"the second record", b"", b"last one here"]


def _create(path: Path, bodies: list[bytes]) -> bytes:
    """Write `bodies` through RecordFile and return the file's bytes."""
    records = RecordFile.open(path, BODY_BYTES_MAX)
    for body in bodies:
        records.append(body)
    records.close()
    return path.read_bytes()


def _record_start(index: int, bodies: list[bytes]) -> int:
    return HEADER_BYTES + sum(RECORD_OVERHEAD_BYTES + len(body) for body in bodies[:index])


def _flip(path: Path, offset: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))
    return bytes(data)


def _reopened_records(path: Path) -> list[bytes]:
    records = RecordFile.open(path, BODY_BYTES_MAX)
    records.close()
    return list(records.records)


def test_round_trip_through_the_file(tmp_path):
    path = tmp_path / "wal" / "votes.log"
    data = _create(path, BODIES)
    assert data == encode_header() + b"".join(frame_record(body) for body in BODIES)
    records = RecordFile.open(path, BODY_BYTES_MAX)
    assert list(records.records) == BODIES
    assert records.size_bytes == len(data)
    records.close()


def test_reopen_after_close_keeps_appending(tmp_path):
    path = tmp_path / "votes.log"
    _create(path, BODIES[:2])
    records = RecordFile.open(path, BODY_BYTES_MAX)
    records.append(b"after reopen")
    assert records.size_bytes == path.stat().st_size
    records.close()
    assert _reopened_records(path) == BODIES[:2] + [b"after reopen"]


def test_missing_file_and_directories_are_created_with_a_header(tmp_path):
    path = tmp_path / "a" / "b" / "votes.log"
    records = RecordFile.open(path, BODY_BYTES_MAX)
    records.close()
    assert records.records == ()
    assert path.read_bytes() == encode_header()
    assert records.size_bytes == HEADER_BYTES


def test_zero_length_file_is_a_new_log(tmp_path):
    path = tmp_path / "votes.log"
    path.write_bytes(b"")
    assert _reopened_records(path) == []
    assert path.read_bytes() == encode_header()


def test_partly_written_header_is_a_new_log(tmp_path):
    path = tmp_path / "votes.log"
    path.write_bytes(encode_header()[:5])
    assert _reopened_records(path) == []
    assert path.read_bytes() == encode_header()


def test_torn_tail_at_every_offset_is_truncated_and_the_log_stays_usable(tmp_path):
    data = _create(tmp_path / "whole.log", BODIES)
    last_start = _record_start(len(BODIES) - 1, BODIES)
    for cut in range(last_start + 1, len(data)):
        path = tmp_path / f"cut-{cut}.log"
        path.write_bytes(data[:cut])
        records = RecordFile.open(path, BODY_BYTES_MAX)
        assert list(records.records) == BODIES[:-1], cut
        assert path.stat().st_size == last_start == records.size_bytes, cut
        records.append(b"after the crash")
        records.close()
        assert _reopened_records(path) == BODIES[:-1] + [b"after the crash"], cut


def test_flipped_byte_in_last_record_is_a_torn_tail(tmp_path):
    path = tmp_path / "votes.log"
    _create(path, BODIES)
    last_start = _record_start(len(BODIES) - 1, BODIES)
    _flip(path, last_start + RECORD_OVERHEAD_BYTES + 3)
    assert _reopened_records(path) == BODIES[:-1]
    assert path.stat().st_size == last_start


def test_invalid_flipped_byte_in_a_middle_record_refuses_to_open_and_changes_nothing(tmp_path):
    data = _create(tmp_path / "whole.log", BODIES)
    start, end = _record_start(1, BODIES), _record_start(2, BODIES)
    for offset in range(start, end):  # marker, length, checksum and body of record 1
        path = tmp_path / f"flip-{offset}.log"
        path.write_bytes(data)
        damaged = _flip(path, offset)
        with pytest.raises(LogCorrupted, match=rf"byte offset {start}\b.* 2 valid record"):
            RecordFile.open(path, BODY_BYTES_MAX)
        assert path.read_bytes() == damaged, offset
        assert not path.with_name(path.name + ".tmp").exists()


def test_invalid_flipped_length_field_raises_log_corrupted(tmp_path):
    path = tmp_path / "votes.log"
    _create(path, BODIES)
    start = _record_start(0, BODIES)
    damaged = _flip(path, start + 4 + 3)  # low byte of the first record's length
    with pytest.raises(LogCorrupted, match=rf"byte offset {start}\b.* 3 valid record"):
        RecordFile.open(path, BODY_BYTES_MAX)
    assert path.read_bytes() == damaged


def test_invalid_flipped_byte_in_header_refuses_to_open_and_changes_nothing(tmp_path):
    data = _create(tmp_path / "whole.log", BODIES)
    for offset in range(HEADER_BYTES):
        path = tmp_path / f"flip-{offset}.log"
        path.write_bytes(data)
        damaged = _flip(path, offset)
        with pytest.raises(LogCorrupted, match="not a Paychain record log|version"):
            RecordFile.open(path, BODY_BYTES_MAX)
        assert path.read_bytes() == damaged, offset


def test_invalid_unknown_format_version(tmp_path):
    path = tmp_path / "votes.log"
    path.write_bytes(encode_header()[:-1] + bytes([2]) + frame_record(b"x"))
    with pytest.raises(LogCorrupted, match="version 2 is unknown"):
        RecordFile.open(path, BODY_BYTES_MAX)


@pytest.mark.parametrize("content", [b"garbage that is not a log at all", b"{}", b"\x00" * 64])
def test_invalid_garbage_file_is_not_treated_as_empty(tmp_path, content):
    path = tmp_path / "votes.log"
    path.write_bytes(content)
    with pytest.raises(LogCorrupted, match="not a Paychain record log"):
        RecordFile.open(path, BODY_BYTES_MAX)
    assert path.read_bytes() == content


def test_invalid_length_above_body_bytes_max_is_damage():
    small, large = b"a" * 10, b"b" * 100
    in_middle = encode_header() + frame_record(small) + frame_record(large) + frame_record(small)
    with pytest.raises(LogCorrupted, match=rf"byte offset {HEADER_BYTES + RECORD_OVERHEAD_BYTES + 10}\b"):
        parse_log(in_middle, body_bytes_max=50)
    at_end = encode_header() + frame_record(small) + frame_record(large)
    parsed = parse_log(at_end, body_bytes_max=50)
    assert parsed.records == (small,)
    assert parsed.valid_length == HEADER_BYTES + RECORD_OVERHEAD_BYTES + 10
    assert parse_log(in_middle, body_bytes_max=100).records == (small, large, small)


def test_invalid_append_above_body_bytes_max_writes_nothing(tmp_path):
    path = tmp_path / "votes.log"
    records = RecordFile.open(path, body_bytes_max=8)
    with pytest.raises(ValueError, match="exceeds body_bytes_max"):
        records.append(b"x" * 9)
    records.append(b"x" * 8)
    records.close()
    assert path.read_bytes() == encode_header() + frame_record(b"x" * 8)


def test_rewrite_replaces_contents_and_survives_reopen(tmp_path):
    path = tmp_path / "votes.log"
    _create(path, BODIES)
    records = RecordFile.open(path, BODY_BYTES_MAX)
    records.rewrite([b"kept", b"also kept"])
    assert records.size_bytes == path.stat().st_size
    records.append(b"appended after rewrite")
    records.close()
    assert _reopened_records(path) == [b"kept", b"also kept", b"appended after rewrite"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["votes.log"]


def test_fsync_failure_on_append_is_a_storage_failure_and_stops_the_file(tmp_path, monkeypatch):
    path = tmp_path / "votes.log"
    records = RecordFile.open(path, BODY_BYTES_MAX)

    def failing_fsync(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageFailure, match=rf"fsync of {path} failed"):
        records.append(b"vote")
    monkeypatch.undo()
    # After a failed fsync the data's fate is unknown: no later write may pretend otherwise.
    with pytest.raises(StorageFailure):
        records.append(b"next vote")
    records.close()


def test_fsync_failure_on_create_is_a_storage_failure(tmp_path, monkeypatch):
    def failing_fsync(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageFailure, match="fsync"):
        RecordFile.open(tmp_path / "votes.log", BODY_BYTES_MAX)


class ShortWriter:
    """A raw file that, like a real one may, writes fewer bytes than asked."""

    def __init__(self, bytes_per_write: int) -> None:
        self.bytes_per_write = bytes_per_write
        self.written = bytearray()

    def write(self, data: bytes) -> int:
        chunk = bytes(data[:self.bytes_per_write])
        self.written += chunk
        return len(chunk)


def test_short_writes_are_completed_and_a_stuck_write_is_a_storage_failure(tmp_path):
    frame = frame_record(b"a vote that needs several writes")
    writer = ShortWriter(bytes_per_write=3)
    record_file._write_all(writer, frame, tmp_path / "votes.log")
    assert bytes(writer.written) == frame
    with pytest.raises(StorageFailure, match="write"):
        record_file._write_all(ShortWriter(bytes_per_write=0), frame, tmp_path / "votes.log")


def test_unreadable_path_is_a_storage_failure(tmp_path):
    path = tmp_path / "votes.log"
    path.mkdir()  # a directory where the file should be
    with pytest.raises(StorageFailure, match="read"):
        RecordFile.open(path, BODY_BYTES_MAX)


bodies_strategy = st.lists(st.binary(max_size=64), max_size=12)


@given(bodies_strategy)
def test_parse_log_returns_every_framed_body(bodies):
    data = encode_header() + b"".join(frame_record(body) for body in bodies)
    parsed = parse_log(data, body_bytes_max=64)
    assert list(parsed.records) == bodies
    assert parsed.valid_length == len(data)
    assert parse_log(bytearray(data), body_bytes_max=64) == parsed  # the simulator's in-memory log


@given(bodies_strategy, st.data())
def test_parse_log_of_any_truncation_returns_a_prefix(bodies, data):
    log = encode_header() + b"".join(frame_record(body) for body in bodies)
    cut = data.draw(st.integers(min_value=0, max_value=len(log)))
    parsed = parse_log(log[:cut], body_bytes_max=64)
    kept = list(parsed.records)
    assert kept == bodies[:len(kept)]
    expected_length = _record_start(len(kept), bodies) if cut >= HEADER_BYTES else 0
    assert parsed.valid_length == expected_length <= cut


@given(st.lists(st.binary(max_size=64), min_size=2, max_size=8), st.data())
def test_invalid_flip_before_the_last_record_always_raises(bodies, data):
    log = bytearray(encode_header() + b"".join(frame_record(body) for body in bodies))
    offset = data.draw(st.integers(min_value=HEADER_BYTES, max_value=_record_start(len(bodies) - 1, bodies) - 1))
    log[offset] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(LogCorrupted, match="valid record"):
        parse_log(log, body_bytes_max=64)
