"""Encrypted keystores (wallet_cli/keystore.py): round trip, wrong password, corruption, file permissions."""

from __future__ import annotations

import copy
import json
import stat

import nacl.pwhash
import pytest

from node import crypto, limits
from wallet_cli.keystore import FLOOR_KDF, Keystore, KeystoreError, WrongPassword, decrypt_seed, encrypt_seed
from tests.support import keys

"""The cheapest kdf limits the keystore accepts: these tests check behaviour, not key-stretching cost."""


@pytest.fixture
def wallet(tmp_path):
    return Keystore(tmp_path / "keys")


@pytest.fixture(scope="module")
def document():
    return encrypt_seed(keys("alice").seed, "correct horse", **FLOOR_KDF)


def test_round_trip_with_default_limits(wallet):
    path = wallet.save("alice", keys("alice"), "correct horse")
    assert path == wallet.folder / "alice.json"
    assert wallet.load("alice", "correct horse") == keys("alice")
    kdf = json.loads(path.read_text())["kdf"]
    assert (kdf["opslimit"], kdf["memlimit"]) == (nacl.pwhash.argon2id.OPSLIMIT_MODERATE,
                                                  nacl.pwhash.argon2id.MEMLIMIT_MODERATE)


def test_file_shows_address_but_never_the_seed(wallet):
    path = wallet.save("alice", keys("alice"), "pw", **FLOOR_KDF)
    text = path.read_text()
    assert keys("alice").seed.hex() not in text
    info = wallet.info("alice")
    assert info.address == crypto.format_address(keys("alice").address)
    assert info.public_key == keys("alice").public_key.hex()


def test_file_is_owner_only(wallet):
    path = wallet.save("alice", keys("alice"), "pw", **FLOOR_KDF)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(wallet.folder.stat().st_mode) & 0o077 == 0
    overwritten = wallet.save("alice", keys("bob"), "pw", overwrite=True, **FLOOR_KDF)
    assert stat.S_IMODE(overwritten.stat().st_mode) == 0o600
    assert list(wallet.folder.iterdir()) == [path]  # no temporary file left behind


def test_same_seed_encrypts_differently_each_time():
    first = encrypt_seed(keys("alice").seed, "pw", **FLOOR_KDF)
    second = encrypt_seed(keys("alice").seed, "pw", **FLOOR_KDF)
    assert first["cipher"]["ciphertext"] != second["cipher"]["ciphertext"]
    assert first["kdf"]["salt"] != second["kdf"]["salt"]


def test_names_lists_saved_keys(wallet):
    assert wallet.names() == []
    wallet.save("bob", keys("bob"), "pw", **FLOOR_KDF)
    wallet.save("alice", keys("alice"), "pw", **FLOOR_KDF)
    (wallet.folder / "notes.txt").write_text("not a key")
    assert wallet.names() == ["alice", "bob"]


def test_invalid_wrong_password(wallet, document):
    wallet.save("alice", keys("alice"), "correct horse", **FLOOR_KDF)
    with pytest.raises(WrongPassword, match="wrong password"):
        wallet.load("alice", "battery staple")
    with pytest.raises(WrongPassword):
        decrypt_seed(document, "")


def test_invalid_key_exists_without_overwrite(wallet):
    wallet.save("alice", keys("alice"), "pw", **FLOOR_KDF)
    with pytest.raises(KeystoreError, match="a key named 'alice' already exists"):
        wallet.save("alice", keys("bob"), "pw", **FLOOR_KDF)
    assert wallet.load("alice", "pw") == keys("alice")


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "x" * 65, "spa ce"])
def test_invalid_key_name(wallet, name):
    with pytest.raises(KeystoreError, match="invalid key name"):
        wallet.save(name, keys("alice"), "pw", **FLOOR_KDF)


def test_invalid_missing_key(wallet):
    with pytest.raises(KeystoreError, match="no key named 'ghost'"):
        wallet.load("ghost", "pw")


@pytest.mark.parametrize("text", ["{not json", "", "\xff\xfe"])
def test_invalid_corrupt_json(wallet, text):
    wallet.folder.mkdir()
    (wallet.folder / "alice.json").write_text(text, encoding="latin-1")
    with pytest.raises(KeystoreError, match="corrupt: not valid JSON"):
        wallet.load("alice", "pw")


@pytest.mark.parametrize("text", ["[]", "null", "42", '{"version": 1}'])
def test_invalid_json_that_is_not_a_keystore(wallet, text):
    wallet.folder.mkdir()
    (wallet.folder / "alice.json").write_text(text)
    with pytest.raises(KeystoreError, match="corrupt"):
        wallet.load("alice", "pw")
    with pytest.raises(KeystoreError, match="corrupt"):
        wallet.info("alice")


def test_invalid_oversize_file(wallet):
    wallet.folder.mkdir()
    (wallet.folder / "alice.json").write_text(" " * (limits.keystore_bytes_max + 1))
    with pytest.raises(KeystoreError, match="larger than"):
        wallet.load("alice", "pw")


def tampered(document, section, field, value):
    changed = copy.deepcopy(document)
    if section is None:
        changed[field] = value
    else:
        changed[section][field] = value
    return changed


def flip_hex(text: str) -> str:
    return ("0" if text[0] != "0" else "1") + text[1:]


def test_invalid_tampered_ciphertext(document):
    with pytest.raises(KeystoreError, match="modified"):
        decrypt_seed(tampered(document, "cipher", "ciphertext", flip_hex(document["cipher"]["ciphertext"])),
                     "correct horse")


def test_invalid_tampered_nonce_or_salt(document):
    for section, field in (("cipher", "nonce"), ("kdf", "salt")):
        changed = tampered(document, section, field, flip_hex(document[section][field]))
        with pytest.raises(KeystoreError):
            decrypt_seed(changed, "correct horse")


def test_invalid_wrong_public_key(document):
    other = tampered(document, None, "public_key", keys("bob").public_key.hex())
    with pytest.raises(KeystoreError, match="the key does not match its public key") as caught:
        decrypt_seed(other, "correct horse")
    assert not isinstance(caught.value, WrongPassword)


@pytest.mark.parametrize("section, field, value, message", [
    (None, "version", 2, "keystore version 2 is not supported"),
    ("kdf", "name", "scrypt", "unknown kdf or cipher"),
    ("cipher", "name", "aes-gcm", "unknown kdf or cipher"),
    ("kdf", "opslimit", 0, "kdf limits are too weak"),
    ("kdf", "opslimit", nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE - 1, "kdf limits are too weak"),
    ("kdf", "memlimit", nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE // 2, "kdf limits are too weak .* 32768 KiB"),
    ("kdf", "memlimit", 2**40, "kdf limits are out of range"),
    ("kdf", "salt", "not hex", "corrupt"),
    ("kdf", "salt", "abcd", "corrupt"),
    ("cipher", "nonce", "abcd", "corrupt"),
    ("cipher", "ciphertext", "zz", "corrupt"),
    (None, "public_key", None, "corrupt"),
    ("kdf", "opslimit", "many", "corrupt"),
])
def test_invalid_corrupt_fields(document, section, field, value, message):
    with pytest.raises(KeystoreError, match=message):
        decrypt_seed(tampered(document, section, field, value), "correct horse")


@pytest.mark.parametrize("field", ["version", "kdf", "cipher", "public_key"])
def test_invalid_missing_field(document, field):
    changed = copy.deepcopy(document)
    del changed[field]
    with pytest.raises(KeystoreError, match="corrupt"):
        decrypt_seed(changed, "correct horse")


def test_invalid_weak_limits_are_never_written() -> None:
    with pytest.raises(KeystoreError, match="too weak"):
        encrypt_seed(keys("alice").seed, "correct horse", opslimit=1, memlimit=8192)
