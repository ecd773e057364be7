"""The browser signer (web/src/signer.js) against Python: the keystores it opens and the transactions it signs.

Python makes every vector (keystores with wallet_cli.keystore, transactions with node.transactions); `node`
runs the signer on all of them at once (web/test/run_signer_vectors.mjs) and each test compares its answer
with what the Python side does: byte-identical signed transactions, the same verdict on broken keystores.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import nacl.pwhash
import pytest

from node import crypto, encoding, limits
from node.transactions import (CallContract, DeployContract, InvalidTransaction, RechargeRequest, Transaction,
                               open_transaction, sign_transaction)
from wallet_cli.keystore import FLOOR_KDF, KeystoreError, WrongPassword, decrypt_seed, encrypt_seed
from tests.support import CHAIN_ID, DOMAIN, keys, other_network

REPOSITORY = Path(__file__).resolve().parents[2]
RUNNER = REPOSITORY / "web" / "test" / "run_signer_vectors.mjs"
"""The cheapest kdf limits a keystore may have: most vectors check formats, not key-stretching cost."""
PASSWORD = "correct horse ☃"
"""Not ASCII, so both sides must stretch the same UTF-8 bytes."""
LONG_CHAIN_ID = "c" * limits.chain_id_chars_max
"""32 characters: msgpack's str8 form, where shorter chain ids use fixstr."""
LONG_CHAIN = crypto.SigningDomain(LONG_CHAIN_ID, crypto.hash_bytes(b"a genesis of the long chain id"))

ALICE_KEYSTORE = encrypt_seed(keys("alice").seed, PASSWORD, **FLOOR_KDF)


def order_payment(sender: str = "alice", chain_id: str = CHAIN_ID) -> Transaction:
    """What a checkout asks the shopper to sign: a create_order call on the orders contract, the order's total
    attached."""
    args = encoding.encode_value((keys("merchant").address, "sku-1", 2, 1_234, "CNY"))
    contract = crypto.contract_address(keys("deployer").address, 0)
    return Transaction(chain_id, keys(sender).public_key, 7, "CNY", 201,
                       CallContract(contract, "create_order", args, 200_000, "CNY", 2_468))


def recharge_request(chain_id: str = LONG_CHAIN_ID) -> Transaction:
    """What the recharge page asks the shopper to sign."""
    return Transaction(chain_id, keys("alice").public_key, 0, "USD", 2,
                       RechargeRequest(keys("gateway").address, "USD", 50_000, "recharge 2f9c"))


def large_deploy() -> Transaction:
    """A valid transaction larger than any payment: the pages never sign one."""
    source = "def init():\n    pass\n" + "# padding\n" * 400
    return Transaction(CHAIN_ID, keys("alice").public_key, 0, "CNY", 50,
                       DeployContract(source, encoding.encode_value(()), 100_000, "", 0))


def with_field(document: dict, path: tuple[str, ...], value: object) -> dict:
    """A copy of a keystore document with the field at `path` replaced (None deletes it)."""
    changed = copy.deepcopy(document)
    *parents, name = path
    target = changed
    for parent in parents:
        target = target[parent]
    if value is None:
        del target[name]
    else:
        target[name] = value
    return changed


def flip_hex(text: str) -> str:
    return ("0" if text[0] != "0" else "1") + text[1:]


TAMPERED_KEYSTORES = {
    "ciphertext_flipped": with_field(ALICE_KEYSTORE, ("cipher", "ciphertext"),
                                     flip_hex(ALICE_KEYSTORE["cipher"]["ciphertext"])),
    "nonce_flipped": with_field(ALICE_KEYSTORE, ("cipher", "nonce"), flip_hex(ALICE_KEYSTORE["cipher"]["nonce"])),
    "salt_flipped": with_field(ALICE_KEYSTORE, ("kdf", "salt"), flip_hex(ALICE_KEYSTORE["kdf"]["salt"])),
    "other_public_key_and_address": with_field(
        with_field(ALICE_KEYSTORE, ("public_key",), keys("bob").public_key.hex()),
        ("address",), crypto.format_address(keys("bob").address)),
    "version_2": with_field(ALICE_KEYSTORE, ("version",), 2),
    "kdf_scrypt": with_field(ALICE_KEYSTORE, ("kdf", "name"), "scrypt"),
    "cipher_aes": with_field(ALICE_KEYSTORE, ("cipher", "name"), "aes-gcm"),
    "opslimit_zero": with_field(ALICE_KEYSTORE, ("kdf", "opslimit"), 0),
    "memlimit_huge": with_field(ALICE_KEYSTORE, ("kdf", "memlimit"), 2**40),
    "opslimit_below_floor": with_field(ALICE_KEYSTORE, ("kdf", "opslimit"), nacl.pwhash.argon2id.OPSLIMIT_MIN),
    "memlimit_below_floor": with_field(ALICE_KEYSTORE, ("kdf", "memlimit"), nacl.pwhash.argon2id.MEMLIMIT_MIN),
    "salt_short": with_field(ALICE_KEYSTORE, ("kdf", "salt"), "abcd"),
    "nonce_short": with_field(ALICE_KEYSTORE, ("cipher", "nonce"), "abcd"),
    "ciphertext_not_hex": with_field(ALICE_KEYSTORE, ("cipher", "ciphertext"), "zz"),
    "public_key_missing": with_field(ALICE_KEYSTORE, ("public_key",), None),
    "kdf_missing": with_field(ALICE_KEYSTORE, ("kdf",), None),
    "cipher_missing": with_field(ALICE_KEYSTORE, ("cipher",), None),
}
"""Broken keystores; Python's own verdict on each (WrongPassword or KeystoreError) is the expected one."""


def build_cases() -> list[dict]:
    alice = json.dumps(ALICE_KEYSTORE)
    default = json.dumps(encrypt_seed(keys("alice").seed, PASSWORD))  # 3 passes over 256 MiB of argon2id memory
    cases = [
        {"name": "describe", "op": "describe", "keystore": alice},
        {"name": "decrypt", "op": "decrypt", "keystore": alice, "password": PASSWORD},
        {"name": "decrypt_default_limits", "op": "decrypt", "keystore": default, "password": PASSWORD},
        {"name": "wrong_password", "op": "decrypt", "keystore": alice, "password": "correct horse"},
        {"name": "empty_password", "op": "decrypt", "keystore": alice, "password": ""},
        {"name": "address_lies", "op": "describe",
         "keystore": json.dumps(with_field(ALICE_KEYSTORE, ("address",), crypto.format_address(keys("bob").address)))},
        {"name": "not_json", "op": "describe", "keystore": "{not json"},
        {"name": "json_not_a_keystore", "op": "describe", "keystore": "[]"},
        {"name": "oversize", "op": "describe", "keystore": " " * (limits.keystore_bytes_max + 1)},
    ]
    cases += [{"name": f"tampered_{name}", "op": "decrypt", "keystore": json.dumps(document), "password": PASSWORD}
              for name, document in TAMPERED_KEYSTORES.items()]
    signing = {
        "sign_order_payment": (DOMAIN, order_payment()),
        "sign_recharge_long_chain_id": (LONG_CHAIN, recharge_request()),
        "sign_order_payment_other_genesis": (other_network(), order_payment()),
        "sign_for_other_key": (DOMAIN, order_payment(sender="bob")),
        "sign_for_other_chain": (crypto.SigningDomain("paychain-other", DOMAIN.genesis_hash), order_payment()),
        "sign_larger_than_a_payment": (DOMAIN, large_deploy()),
    }
    cases += [{"name": name, "op": "sign", "keystore": alice, "password": PASSWORD, "chain_id": domain.chain_id,
               "genesis_hash": "0x" + domain.genesis_hash.hex(), "payload": encoding.encode(transaction).hex()}
              for name, (domain, transaction) in signing.items()]
    cases += [{"name": f"sign_garbage_{index}", "op": "sign", "keystore": alice, "password": PASSWORD,
               "chain_id": CHAIN_ID, "genesis_hash": "0x" + DOMAIN.genesis_hash.hex(), "payload": payload}
              for index, payload in enumerate(["", "00", "96a1", encoding.encode(order_payment()).hex()[:60]])]
    cases += [{"name": f"sign_bad_genesis_hash_{index}", "op": "sign", "keystore": alice, "password": PASSWORD,
               "chain_id": CHAIN_ID, "genesis_hash": genesis_hash, "payload": encoding.encode(order_payment()).hex()}
              for index, genesis_hash in enumerate([None, "", "0x" + DOMAIN.genesis_hash.hex()[:-2], "0xzz" * 16])]
    return cases


@pytest.fixture(scope="module")
def signer(tmp_path_factory) -> dict:
    """The browser signer's answers to every case: {"constants": …, "results": {name: {"ok"|"error": …}}}."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js 20+) is not installed: the browser signer cannot be tested")
    if not (REPOSITORY / "web" / "node_modules" / "libsodium-wrappers-sumo").is_dir():
        pytest.fail("web/node_modules is missing: run ./scripts/build_web (needs npm and the npm registry)")
    vectors = tmp_path_factory.mktemp("signer") / "vectors.json"
    vectors.write_text(json.dumps({"cases": build_cases()}))
    completed = subprocess.run([node, str(RUNNER), str(vectors)], capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        pytest.fail(f"the signer runner failed:\n{completed.stderr}")
    return json.loads(completed.stdout)


def result(signer: dict, name: str) -> dict:
    return signer["results"][name]


def error_name(signer: dict, name: str) -> str | None:
    outcome = result(signer, name)
    assert "error" in outcome, f"{name}: expected an error, got {outcome}"
    return outcome["error"]["name"]


def test_constants_match_the_node(signer):
    assert signer["constants"] == {"keystore_bytes_max": limits.keystore_bytes_max,
                                   "signed_tx_bytes_max": limits.payment_tx_bytes_max,
                                   "tag_transaction": crypto.TAG_TRANSACTION.decode()}


def test_describe_reads_address_without_password(signer):
    assert result(signer, "describe") == {"ok": {"address": crypto.format_address(keys("alice").address),
                                                 "public_key": keys("alice").public_key.hex()}}


@pytest.mark.parametrize("name", ["decrypt", "decrypt_default_limits"])
def test_decrypt_opens_python_keystore(signer, name):
    assert result(signer, name) == {"ok": {"seed": keys("alice").seed.hex(),
                                           "public_key": keys("alice").public_key.hex(),
                                           "address": crypto.format_address(keys("alice").address)}}


@pytest.mark.parametrize("name, domain, transaction", [
    ("sign_order_payment", DOMAIN, order_payment()),
    ("sign_recharge_long_chain_id", LONG_CHAIN, recharge_request()),
    ("sign_order_payment_other_genesis", other_network(), order_payment()),
])
def test_signed_bytes_equal_python_and_open(signer, name, domain, transaction):
    expected = sign_transaction(keys("alice"), domain, transaction)
    signed = bytes.fromhex(result(signer, name)["ok"]["signed"])
    assert signed == expected
    envelope = open_transaction(signed, domain)
    assert envelope.sender == keys("alice").address
    assert envelope.transaction == transaction


def test_invalid_browser_signature_for_another_genesis_with_the_same_chain_id(signer):
    # The page signs for the genesis the gateway names: a payment signed for one network is refused by another.
    for_other_network = bytes.fromhex(result(signer, "sign_order_payment_other_genesis")["ok"]["signed"])
    assert for_other_network != bytes.fromhex(result(signer, "sign_order_payment")["ok"]["signed"])
    with pytest.raises(InvalidTransaction) as caught:
        open_transaction(for_other_network, DOMAIN)
    assert caught.value.code == "bad_signature"


@pytest.mark.parametrize("name", ["wrong_password", "empty_password"])
def test_invalid_wrong_password(signer, name):
    assert error_name(signer, name) == "WrongPassword"
    with pytest.raises(WrongPassword):
        decrypt_seed(ALICE_KEYSTORE, "correct horse")


@pytest.mark.parametrize("name", sorted(TAMPERED_KEYSTORES))
def test_invalid_tampered_keystore_same_verdict_as_python(signer, name):
    with pytest.raises(KeystoreError) as caught:
        decrypt_seed(TAMPERED_KEYSTORES[name], PASSWORD)
    python_verdict = "WrongPassword" if isinstance(caught.value, WrongPassword) else "BadKeystore"
    assert error_name(signer, f"tampered_{name}") == python_verdict


@pytest.mark.parametrize("name", ["address_lies", "not_json", "json_not_a_keystore", "oversize"])
def test_invalid_keystore_file(signer, name):
    # The browser also refuses an address field that is not its public key's: the page shows that address.
    assert error_name(signer, name) == "BadKeystore"


@pytest.mark.parametrize("name", ["sign_for_other_key", "sign_for_other_chain", "sign_garbage_0",
                                  "sign_garbage_1", "sign_garbage_2", "sign_garbage_3", "sign_bad_genesis_hash_0",
                                  "sign_bad_genesis_hash_1", "sign_bad_genesis_hash_2", "sign_bad_genesis_hash_3"])
def test_invalid_payload_refused(signer, name):
    assert error_name(signer, name) == "BadPayload"


def test_invalid_payload_larger_than_a_payment(signer):
    raw = sign_transaction(keys("alice"), DOMAIN, large_deploy())
    assert len(raw) > limits.payment_tx_bytes_max
    open_transaction(raw, DOMAIN)  # valid on chain, but not something a checkout or recharge page signs
    assert error_name(signer, "sign_larger_than_a_payment") == "BadPayload"
