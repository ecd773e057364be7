"""A validator as the chain records it: name, key, role and libp2p address (below the state and the
transactions that change the validator set, so both can name it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from node import crypto, encoding
from node.encoding import PUBLIC_KEY, Text, UInt, check_schema


@check_schema
@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    SCHEMA: ClassVar = (Text(64, ascii_only=True), PUBLIC_KEY, UInt(3), Text(256, ascii_only=True))
    name: str
    public_key: bytes
    role: int
    """Who runs it: merchant, gateway or user (a `transactions.Role`)."""
    p2p_address: str
    """libp2p multiaddress other validators dial (empty for a single-validator chain)."""

    @property
    def address(self) -> bytes:
        return crypto.address_from_public_key(self.public_key)


VALIDATOR_INFO_BYTES_MAX = 384
"""Largest encoded ValidatorInfo (longest name and p2p address; asserted below)."""
assert len(encoding.encode(ValidatorInfo("n" * 64, bytes(32), 3, "a" * 256))) <= VALIDATOR_INFO_BYTES_MAX
