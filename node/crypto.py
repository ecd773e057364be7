"""Keys, addresses, hashing and domain-separated signatures.

Everything that signs or verifies goes through `sign` / `verify`, which bind the
signing domain (chain id and genesis hash) and a type tag to the message so that a
signature made for one purpose (a transaction on network A) can never be accepted for
another (a vote, or network B — even one that shares A's chain id).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.signing

PUBLIC_KEY_BYTES = 32
SECRET_SEED_BYTES = 32
SIGNATURE_BYTES = 64
HASH_BYTES = 32
ADDRESS_BYTES = 20
ADDRESS_CHECKSUM_BYTES = 4
ADDRESS_PREFIX = "pay1"

# Type tags: one per kind of signed object. Adding a kind means adding a tag here.
TAG_TRANSACTION = b"paychain/tx/v1"
TAG_COMMIT_VOTE = b"paychain/commit/v1"
TAG_KYC_ATTESTATION = b"paychain/kyc/v1"
TAG_PREPARE_VOTE = b"paychain/prepare/v1"
TAG_CONSENSUS = b"paychain/consensus/v1"
"""Every other consensus message (pre-prepare, view change, new view)."""
TAG_CONTRACT_MESSAGE = b"paychain/contract-msg/v1"
"""Off-chain messages a contract checks (e.g. a gateway's signed exchange-rate quote)."""

_SIGNED_TAGS = (TAG_TRANSACTION, TAG_COMMIT_VOTE, TAG_KYC_ATTESTATION, TAG_PREPARE_VOTE, TAG_CONSENSUS,
                TAG_CONTRACT_MESSAGE)


class InvalidAddress(ValueError):
    """Text that is not a well-formed Paychain address (bad prefix, characters or checksum)."""


def hash_bytes(data: bytes) -> bytes:
    """The chain's hash function: BLAKE2b with a 32-byte digest."""
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


def hash_pair(left: bytes, right: bytes) -> bytes:
    """Hash of an inner Merkle node."""
    return hashlib.blake2b(left + right, digest_size=HASH_BYTES, person=b"paychain-node").digest()


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An ed25519 key pair."""

    seed: bytes
    """32-byte secret seed (the part a keystore encrypts)."""
    public_key: bytes
    """32-byte ed25519 public key."""

    @staticmethod
    def generate() -> KeyPair:
        signing_key = nacl.signing.SigningKey.generate()
        return KeyPair(bytes(signing_key), bytes(signing_key.verify_key))

    @staticmethod
    def from_seed(seed: bytes) -> KeyPair:
        if len(seed) != SECRET_SEED_BYTES:
            raise ValueError(f"an ed25519 seed is {SECRET_SEED_BYTES} bytes, got {len(seed)}")
        signing_key = nacl.signing.SigningKey(seed)
        return KeyPair(seed, bytes(signing_key.verify_key))

    @property
    def address(self) -> bytes:
        return address_from_public_key(self.public_key)

    def __repr__(self) -> str:  # never print the seed
        return f"KeyPair(address={format_address(self.address)})"


@dataclass(frozen=True, slots=True)
class SigningDomain:
    """The network every signature is made for: one value per chain, made once from its genesis.

    The chain id alone does not tell networks apart (every local network is "paychain-local"),
    so the domain also holds the genesis hash: a signature for one network never verifies on another.
    """

    chain_id: str
    """The chain's name from genesis (ASCII)."""
    genesis_hash: bytes
    """`Genesis.hash`: the hash of the chain's parameters and initial state."""

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, str) or not self.chain_id.isascii() or not 0 < len(self.chain_id) <= 255:
            raise ValueError("a signing domain's chain id is 1 to 255 ASCII characters")
        if not isinstance(self.genesis_hash, bytes) or len(self.genesis_hash) != HASH_BYTES:
            raise ValueError(f"a signing domain's genesis hash is {HASH_BYTES} bytes")


def _signing_message(domain: SigningDomain, tag: bytes, payload: bytes) -> bytes:
    assert tag in _SIGNED_TAGS, tag
    assert isinstance(domain, SigningDomain), f"signatures need a SigningDomain, got {type(domain).__name__}"
    chain = domain.chain_id.encode()
    # Length prefixes make the concatenation unambiguous; the genesis hash has a fixed length.
    return len(tag).to_bytes(1, "big") + tag + len(chain).to_bytes(1, "big") + chain + domain.genesis_hash + payload


def sign(keys: KeyPair, domain: SigningDomain, tag: bytes, payload: bytes) -> bytes:
    """Sign `payload` for the network `domain` under type `tag`; returns a 64-byte signature."""
    message = _signing_message(domain, tag, payload)
    signed = nacl.bindings.crypto_sign(message, keys.seed + keys.public_key)
    return signed[:SIGNATURE_BYTES]


def verify(public_key: bytes, domain: SigningDomain, tag: bytes, payload: bytes, signature: bytes) -> bool:
    """True if `signature` is `public_key`'s signature of `payload` for the network `domain` under `tag`."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    message = _signing_message(domain, tag, payload)
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


# --- addresses ---------------------------------------------------------------------

def address_from_public_key(public_key: bytes) -> bytes:
    """The 20-byte account address of a public key."""
    assert len(public_key) == PUBLIC_KEY_BYTES
    return hashlib.blake2b(public_key, digest_size=ADDRESS_BYTES, person=b"paychain-addr").digest()


def contract_address(deployer: bytes, nonce: int) -> bytes:
    """The address of the contract `deployer` deploys with the transaction of `nonce` (never a key's address:
    a different personalisation)."""
    return hashlib.blake2b(deployer + nonce.to_bytes(8, "big"), digest_size=ADDRESS_BYTES,
                           person=b"paychain-contrct").digest()


def _address_checksum(address: bytes) -> bytes:
    return hashlib.blake2b(address, digest_size=ADDRESS_CHECKSUM_BYTES, person=b"paychain-chk").digest()


def format_address(address: bytes) -> str:
    """Text form: `pay1` + lowercase base32 of address and a 4-byte checksum.

    A single mistyped character changes the checksum, so a typo is detected
    (with probability 1 - 2**-32) instead of sending funds to nobody.
    """
    assert len(address) == ADDRESS_BYTES
    body = base64.b32encode(address + _address_checksum(address)).decode().rstrip("=").lower()
    return ADDRESS_PREFIX + body


def parse_address(text: str) -> bytes:
    """Inverse of `format_address`; raises InvalidAddress naming what is wrong."""
    if not isinstance(text, str):
        raise InvalidAddress("an address must be a string")
    text = text.strip()
    if not text.startswith(ADDRESS_PREFIX):
        raise InvalidAddress(f"an address starts with '{ADDRESS_PREFIX}'")
    body = text[len(ADDRESS_PREFIX):].upper()
    expected_chars = -(-(ADDRESS_BYTES + ADDRESS_CHECKSUM_BYTES) * 8 // 5)
    if len(body) != expected_chars:
        raise InvalidAddress(f"an address has {len(ADDRESS_PREFIX) + expected_chars} characters, got {len(text)}")
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as error:
        raise InvalidAddress("an address uses only the characters a-z and 2-7") from error
    address, checksum = raw[:ADDRESS_BYTES], raw[ADDRESS_BYTES:]
    if _address_checksum(address) != checksum:
        raise InvalidAddress("address checksum mismatch (typo?)")
    if format_address(address) != text.lower():
        # The last character carries unused bits: only the canonical spelling is accepted.
        raise InvalidAddress("address is not in canonical form (typo?)")
    return address
