"""Hypothesis strategies that build any encodable dataclass from its SCHEMA (shared by the unit tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from node import encoding

PRINTABLE_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
ITEMS_MAX = 3
"""Longest sequence generated: enough to cover empty, one and several items, small enough to stay fast."""


def codec_values(codec: Any) -> st.SearchStrategy:
    """Values that `codec` accepts."""
    if isinstance(codec, encoding.UInt):
        return st.integers(0, codec.max)
    if isinstance(codec, encoding.Bytes):
        if codec.size is not None:
            return st.binary(min_size=codec.size, max_size=codec.size)
        return st.binary(max_size=min(codec.max_size, 80))
    if isinstance(codec, encoding.Text):
        if codec.ascii_only:
            return st.text(PRINTABLE_ASCII, max_size=codec.max_bytes)
        return st.text(max_size=codec.max_bytes).filter(lambda text: len(text.encode()) <= codec.max_bytes)
    if isinstance(codec, encoding.Bool):
        return st.booleans()
    if isinstance(codec, encoding.Seq):
        return st.lists(codec_values(codec.item), max_size=min(codec.max_items, ITEMS_MAX)).map(tuple)
    if isinstance(codec, encoding.Optional):
        return st.none() | codec_values(codec.item)
    if isinstance(codec, encoding.Struct):
        return instances(codec.cls)
    if isinstance(codec, encoding.Tagged):
        return st.one_of([instances(cls) for cls in codec.classes_by_tag.values()])
    raise AssertionError(f"no strategy for codec {codec!r}")


def instances(cls: type) -> st.SearchStrategy:
    """Any value of the encodable dataclass `cls`."""
    return st.deferred(lambda: st.builds(cls, *[codec_values(codec) for codec in cls.SCHEMA]))
