"""Length-prefixed frames on a peer stream: a 4-byte big-endian length, then that many bytes.

This is transport framing only; what a frame carries is encoded by `node.encoding`. The
decoder checks a frame's length before it buffers the body, so a peer announcing a huge
frame costs us nothing but the stream.
"""

from __future__ import annotations

from node import encoding

HEADER_BYTES = 4
LENGTH_MAX = 2**32 - 1


class FrameTooLarge(ValueError):
    """A peer announced a frame longer than the receiver's limit."""


def encode_frame(message: bytes) -> bytes:
    """`message` with its length prefix."""
    assert len(message) <= LENGTH_MAX
    return encoding.encode_uint_be(len(message), HEADER_BYTES) + message


def encode_frames(messages: list[bytes]) -> bytes:
    """Several frames back to back, ready for one write."""
    return b"".join(encode_frame(message) for message in messages)


class FrameDecoder:
    """Splits the bytes of one stream into frames, in order."""

    def __init__(self, frame_bytes_max: int) -> None:
        assert 0 < frame_bytes_max <= LENGTH_MAX
        self._frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes read from the stream; return every frame they complete.

        Raises FrameTooLarge as soon as a header announces more than the limit; the
        stream is unusable after that (its framing can no longer be trusted).
        """
        self._buffer += data
        frames: list[bytes] = []
        view = memoryview(self._buffer)
        offset = 0
        try:
            while len(view) - offset >= HEADER_BYTES:
                length = encoding.decode_uint_be(view[offset:offset + HEADER_BYTES])
                if length > self._frame_bytes_max:
                    raise FrameTooLarge(f"frame of {length} bytes is over the limit of {self._frame_bytes_max}")
                end = offset + HEADER_BYTES + length
                if end > len(view):
                    break
                frames.append(bytes(view[offset + HEADER_BYTES:end]))
                offset = end
        finally:
            view.release()
        # One deletion per read, not per frame: many small frames arrive in one chunk.
        del self._buffer[:offset]
        return frames

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete frame held until the rest arrives (at most a header plus the limit)."""
        return len(self._buffer)
