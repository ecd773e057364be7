"""The KeyValueStore port and its two adapters: LevelDB (plyvel) and in-memory.

Writes happen only in atomic batches (`write`): a block, its receipts, its state
changes and its indexes land together or not at all.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Iterable, Iterator, Protocol

import plyvel


class StoreError(Exception):
    """The store cannot be opened or used (locked, corrupt, another chain, newer format)."""


class KeyValueStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def write(self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = ()) -> None:
        """Apply all puts and deletes atomically and durably."""

    def iterate(self, prefix: bytes, reverse: bool = False, stop: bytes | None = None
                ) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with `prefix` (and, if `stop` is given, sorts before it), in key order."""

    def close(self) -> None: ...


class LevelDbStore:
    """LevelDB through plyvel; every write batch is transactional and synced to disk."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = plyvel.DB(str(path), create_if_missing=True)
        except plyvel.IOError as error:
            raise StoreError(f"cannot open the store at {path}: {error} (is another node using it?)") from error
        except plyvel.CorruptionError as error:
            raise StoreError(f"the store at {path} is corrupt: {error}") from error

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def write(self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = ()) -> None:
        with self._db.write_batch(transaction=True, sync=True) as batch:
            for key, value in puts:
                batch.put(key, value)
            for key in deletes:
                batch.delete(key)

    def iterate(self, prefix: bytes, reverse: bool = False, stop: bytes | None = None
                ) -> Iterator[tuple[bytes, bytes]]:
        assert stop is None or stop.startswith(prefix)
        if not reverse:
            iterator = self._db.iterator(prefix=prefix) if stop is None else self._db.iterator(start=prefix, stop=stop)
            with iterator:
                yield from iterator
            return
        # plyvel (1.5) drops a key equal to the lower bound when it is the only key in a reverse
        # range, so going backwards is bounded above only and ends at the first key outside the prefix.
        upper = stop if stop is not None else _prefix_successor(prefix)
        iterator = self._db.iterator(reverse=True) if upper is None else self._db.iterator(stop=upper, reverse=True)
        with iterator:
            for key, value in iterator:
                if not key.startswith(prefix):
                    return
                yield key, value

    def close(self) -> None:
        self._db.close()


def _prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no such key)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class MemoryStore:
    """In-memory twin for unit tests and the simulator: same contract, no durability."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def write(self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = ()) -> None:
        puts, deletes = list(puts), list(deletes)  # materialise first: all or nothing
        for key, value in puts:
            assert type(key) is bytes and type(value) is bytes
        for key, value in puts:
            if key not in self._data:
                bisect.insort(self._keys, key)
            self._data[key] = value
        for key in deletes:
            if self._data.pop(key, None) is not None:
                self._keys.pop(bisect.bisect_left(self._keys, key))

    def iterate(self, prefix: bytes, reverse: bool = False, stop: bytes | None = None
                ) -> Iterator[tuple[bytes, bytes]]:
        start = bisect.bisect_left(self._keys, prefix)
        matching = []
        for key in self._keys[start:]:
            if not key.startswith(prefix) or (stop is not None and key >= stop):
                break
            matching.append(key)
        for key in reversed(matching) if reverse else matching:
            yield key, self._data[key]

    def close(self) -> None:
        pass
