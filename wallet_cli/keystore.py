"""Encrypted keystores: one JSON file per key, argon2id + XSalsa20-Poly1305 (SecretBox), mode 0600.

The password stretches to a key with argon2id and a random salt; SecretBox authenticates the ciphertext,
so a wrong password and a corrupted file are both detected, never mistaken for a key.

New keystores use libsodium's MODERATE limits (3 passes, 256 MiB: ~0.4 s here, a few seconds in a
browser). A keystore file sets its own limits, so an attacker who hands a user a file, or a tool that
wrote one carelessly, could make a password cheap to guess: files below the floor (libsodium's
INTERACTIVE limits, 2 passes and 64 MiB) are refused, here and in the browser signer (web/src/signer.js).
The local network's development keystores are written at the floor, to keep tests quick.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from node import crypto, limits

KEYSTORE_VERSION = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KeystoreError(Exception):
    """A keystore that cannot be used; the message says why (missing, corrupt, exists…)."""


class WrongPassword(KeystoreError):
    """The password does not open this keystore."""


@dataclass(frozen=True, slots=True)
class KeystoreInfo:
    name: str
    address: str
    public_key: str
    path: Path


KDF_OPSLIMIT_DEFAULT = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
KDF_MEMLIMIT_DEFAULT = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
KDF_OPSLIMIT_FLOOR = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
KDF_MEMLIMIT_FLOOR = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
FLOOR_KDF = {"opslimit": KDF_OPSLIMIT_FLOOR, "memlimit": KDF_MEMLIMIT_FLOOR}
"""The cheapest limits accepted (for development keystores and tests)."""
PASSWORD_CHARS_MIN = 8


def check_kdf_limits(opslimit: int, memlimit: int) -> None:
    if opslimit > nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE or memlimit > nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE:
        raise KeystoreError("keystore kdf limits are out of range (above libsodium's SENSITIVE limits)")
    if opslimit < KDF_OPSLIMIT_FLOOR or memlimit < KDF_MEMLIMIT_FLOOR:
        raise KeystoreError(
            f"keystore kdf limits are too weak ({opslimit} passes, {memlimit // 1024} KiB): a password is cheap to "
            f"guess below {KDF_OPSLIMIT_FLOOR} passes and {KDF_MEMLIMIT_FLOOR // 2**20} MiB. Re-encrypt the key: "
            "export it with the tool that wrote this file, then `paywallet import` it")


def encrypt_seed(seed: bytes, password: str, opslimit: int = KDF_OPSLIMIT_DEFAULT,
                 memlimit: int = KDF_MEMLIMIT_DEFAULT) -> dict:
    check_kdf_limits(opslimit, memlimit)
    keys = crypto.KeyPair.from_seed(seed)
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, password.encode(), salt,
                                   opslimit=opslimit, memlimit=memlimit)
    box = nacl.secret.SecretBox(key)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    ciphertext = box.encrypt(seed, nonce).ciphertext
    return {
        "version": KEYSTORE_VERSION,
        "address": crypto.format_address(keys.address),
        "public_key": keys.public_key.hex(),
        "kdf": {"name": "argon2id", "salt": salt.hex(), "opslimit": opslimit, "memlimit": memlimit},
        "cipher": {"name": "xsalsa20poly1305", "nonce": nonce.hex(), "ciphertext": ciphertext.hex()},
    }


def decrypt_seed(document: dict, password: str) -> crypto.KeyPair:
    try:
        if document["version"] != KEYSTORE_VERSION:
            raise KeystoreError(f"keystore version {document['version']} is not supported")
        kdf, cipher = document["kdf"], document["cipher"]
        if kdf["name"] != "argon2id" or cipher["name"] != "xsalsa20poly1305":
            raise KeystoreError("keystore uses an unknown kdf or cipher")
        salt = bytes.fromhex(kdf["salt"])
        nonce = bytes.fromhex(cipher["nonce"])
        ciphertext = bytes.fromhex(cipher["ciphertext"])
        opslimit, memlimit = int(kdf["opslimit"]), int(kdf["memlimit"])
        check_kdf_limits(opslimit, memlimit)
        expected_public_key = bytes.fromhex(document["public_key"])
        if len(salt) != nacl.pwhash.argon2id.SALTBYTES or len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
            raise ValueError("salt or nonce has the wrong length")
    except (KeyError, TypeError, ValueError) as error:
        raise KeystoreError(f"keystore is corrupt: {error!r}") from error
    key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, password.encode(), salt,
                                   opslimit=opslimit, memlimit=memlimit)
    try:
        seed = nacl.secret.SecretBox(key).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError as error:
        raise WrongPassword("wrong password (or the keystore was modified)") from error
    keys = crypto.KeyPair.from_seed(seed)
    if keys.public_key != expected_public_key:
        raise KeystoreError("keystore is corrupt: the key does not match its public key")
    return keys


class Keystore:
    """A folder of keystore files, `<name>.json`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path_of(self, name: str) -> Path:
        if not NAME_PATTERN.match(name):
            raise KeystoreError(f"invalid key name {name!r}: use letters, digits, '_', '.', '-' (max 64)")
        return self.folder / f"{name}.json"

    def save(self, name: str, keys: crypto.KeyPair, password: str, overwrite: bool = False, **kdf_limits: int) -> Path:
        path = self.path_of(name)
        if path.exists() and not overwrite:
            raise KeystoreError(f"a key named {name!r} already exists ({path})")
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        document = encrypt_seed(keys.seed, password, **kdf_limits)
        temporary = path.with_suffix(".json.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(document, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)  # atomic: a crash never leaves half a keystore
        return path

    def read_document(self, name: str) -> dict:
        path = self.path_of(name)
        try:
            if path.stat().st_size > limits.keystore_bytes_max:
                raise KeystoreError(f"{path} is larger than {limits.keystore_bytes_max} bytes")
            return json.loads(path.read_text())
        except FileNotFoundError as error:
            raise KeystoreError(f"no key named {name!r} in {self.folder}") from error
        except (ValueError, UnicodeDecodeError) as error:
            raise KeystoreError(f"keystore {path} is corrupt: not valid JSON") from error

    def load(self, name: str, password: str) -> crypto.KeyPair:
        return decrypt_seed(self.read_document(name), password)

    def info(self, name: str) -> KeystoreInfo:
        document = self.read_document(name)
        try:
            return KeystoreInfo(name, str(document["address"]), str(document["public_key"]), self.path_of(name))
        except (KeyError, TypeError) as error:
            raise KeystoreError(f"keystore {name!r} is corrupt: missing {error}") from error

    def names(self) -> list[str]:
        if not self.folder.exists():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json") if NAME_PATTERN.match(p.stem))
