/**
 * The browser signer: opens a Paychain keystore and signs a transaction the gateway prepared.
 *
 * It owns the browser's copy of three byte formats, each checked against Python-made vectors
 * by tests/unit/test_browser_signer.py:
 * - the keystore (wallet_cli/keystore.py): argon2id with the file's own limits, then a
 *   XSalsa20-Poly1305 SecretBox around the 32-byte ed25519 seed;
 * - the domain-separated signing message (node/crypto.py `_signing_message`), whose domain is
 *   the chain id and the genesis hash (node/crypto.py `SigningDomain`);
 * - the signed transaction (node/transactions.py `sign_transaction`): the msgpack array
 *   [transaction, signature], i.e. 0x92 ‖ payload ‖ 0xc4 0x40 ‖ signature.
 * The gateway makes the payload (the canonical unsigned transaction) and names the network's
 * genesis hash; this module reads only the payload's chain id and sender key, to refuse signing
 * for another chain or another key.
 */

import sodium from "libsodium-wrappers-sumo";

export const KEYSTORE_VERSION = 1;
export const KEYSTORE_BYTES_MAX = 64 * 1024; // node/limits.py keystore_bytes_max
export const SIGNED_TX_BYTES_MAX = 2048; // node/limits.py payment_tx_bytes_max: the pages sign payments only
export const TAG_TRANSACTION = "paychain/tx/v1"; // node/crypto.py TAG_TRANSACTION
const CHAIN_ID_CHARS_MAX = 32; // node/limits.py chain_id_chars_max
const GENESIS_HASH_BYTES = 32; // node/crypto.py HASH_BYTES
const SEED_BYTES = 32;
const PUBLIC_KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;
const ADDRESS_BYTES = 20;
const ADDRESS_CHECKSUM_BYTES = 4;
const ADDRESS_PREFIX = "pay1";
const BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

// msgpack headers of the canonical encodings this module reads or writes.
const MSGPACK_FIXARRAY_2 = 0x92; // SignedTransaction: [transaction, signature]
const MSGPACK_FIXARRAY_6 = 0x96; // Transaction: [chain_id, sender_public_key, nonce, fee_asset, fee, body]
const MSGPACK_FIXSTR = 0xa0; // | length, for strings of at most 31 bytes
const MSGPACK_STR8 = 0xd9; // then a 1-byte length, for 32..255 bytes
const MSGPACK_BIN8 = 0xc4; // then a 1-byte length

/** An Error with a stable `name` the pages branch on: "WrongPassword", "BadKeystore", "BadPayload". */
function failure(name, message) {
  const error = new Error(message);
  error.name = name;
  return error;
}

// --- hex -----------------------------------------------------------------------------

export function bytesToHex(bytes) {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Bytes of a hex string (even length, no prefix); throws a TypeError on anything else. */
export function hexToBytes(text) {
  if (typeof text !== "string" || !/^(?:[0-9a-fA-F]{2})*$/.test(text)) {
    throw new TypeError("expected a hex string of whole bytes");
  }
  const bytes = new Uint8Array(text.length / 2);
  for (let index = 0; index < bytes.length; index += 1) {
    bytes[index] = parseInt(text.slice(2 * index, 2 * index + 2), 16);
  }
  return bytes;
}

function bytesEqual(left, right) {
  return left.length === right.length && left.every((byte, index) => byte === right[index]);
}

// --- addresses (node/crypto.py format_address) -----------------------------------------

/** BLAKE2b of `input` with a personalisation, like Python's `hashlib.blake2b(person=…)`. */
function blake2bPersonal(input, outputBytes, person) {
  // libsodium.js only wraps the keyed, empty-input form of this function, so call the C function.
  const raw = sodium.libsodium;
  const personal = new Uint8Array(16); // zero-padded, as hashlib pads it
  personal.set(new TextEncoder().encode(person));
  const output = raw._malloc(outputBytes);
  const message = raw._malloc(Math.max(input.length, 1));
  const personalAddress = raw._malloc(personal.length);
  try {
    raw.HEAPU8.set(input, message);
    raw.HEAPU8.set(personal, personalAddress);
    // (out, outlen, in, inlen as two 32-bit halves, key, keylen, salt, personal)
    const status = raw._crypto_generichash_blake2b_salt_personal(
      output, outputBytes, message, input.length, 0, 0, 0, 0, personalAddress);
    if (status !== 0) throw new Error("blake2b failed");
    return raw.HEAPU8.slice(output, output + outputBytes);
  } finally {
    raw._free(output);
    raw._free(message);
    raw._free(personalAddress);
  }
}

function base32(bytes) {
  let text = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      text += BASE32_ALPHABET[(buffer >> bits) & 31];
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) text += BASE32_ALPHABET[(buffer << (5 - bits)) & 31];
  return text;
}

/** The text address of an ed25519 public key: "pay1" + base32(address ‖ checksum). */
export function formatAddress(publicKey) {
  const address = blake2bPersonal(publicKey, ADDRESS_BYTES, "paychain-addr");
  const checksum = blake2bPersonal(address, ADDRESS_CHECKSUM_BYTES, "paychain-chk");
  const body = new Uint8Array(ADDRESS_BYTES + ADDRESS_CHECKSUM_BYTES);
  body.set(address);
  body.set(checksum, ADDRESS_BYTES);
  return ADDRESS_PREFIX + base32(body);
}

// --- keystore ------------------------------------------------------------------------

/** The parsed keystore document, or a BadKeystore error; checks only that it is JSON of a sane size. */
function parseKeystoreText(keystoreJsonText) {
  if (typeof keystoreJsonText !== "string" || keystoreJsonText.length > KEYSTORE_BYTES_MAX) {
    throw failure("BadKeystore", `a keystore file is at most ${KEYSTORE_BYTES_MAX} bytes of JSON`);
  }
  try {
    return JSON.parse(keystoreJsonText);
  } catch {
    throw failure("BadKeystore", "this file is not a Paychain keystore (not JSON)");
  }
}

function hexField(value, what, size) {
  let bytes;
  try {
    bytes = hexToBytes(value);
  } catch {
    throw failure("BadKeystore", `keystore is corrupt: ${what} is not hex`);
  }
  if (size !== undefined && bytes.length !== size) {
    throw failure("BadKeystore", `keystore is corrupt: ${what} must be ${size} bytes`);
  }
  return bytes;
}

function integerIn(value, what, low, high) {
  if (!Number.isSafeInteger(value) || value < low || value > high) {
    throw failure("BadKeystore", `keystore ${what} is out of range`);
  }
  return value;
}

/**
 * A keystore's argon2id limit: a file sets its own, and below libsodium's INTERACTIVE limits (2 passes,
 * 64 MiB) a password is cheap to guess, so such a file is refused (as wallet_cli/keystore.py does).
 */
function kdfLimit(value, what, floor, ceiling) {
  const limit = integerIn(value, `kdf ${what}`, 0, ceiling);
  if (limit < floor) {
    throw failure("BadKeystore", `keystore kdf limits are too weak (${what} ${limit} < ${floor}): ` +
      "re-encrypt the key with paywallet import");
  }
  return limit;
}

/** The fields of a keystore document, checked like wallet_cli/keystore.py `decrypt_seed`. */
function readKeystoreFields(document) {
  const { kdf, cipher } = document ?? {};
  if (document?.version !== KEYSTORE_VERSION) {
    throw failure("BadKeystore", `keystore version ${document?.version} is not supported`);
  }
  if (kdf?.name !== "argon2id" || cipher?.name !== "xsalsa20poly1305") {
    throw failure("BadKeystore", "keystore uses an unknown kdf or cipher");
  }
  return {
    salt: hexField(kdf.salt, "salt", sodium.crypto_pwhash_SALTBYTES),
    opslimit: kdfLimit(kdf.opslimit, "opslimit", sodium.crypto_pwhash_OPSLIMIT_INTERACTIVE,
      sodium.crypto_pwhash_OPSLIMIT_SENSITIVE),
    memlimit: kdfLimit(kdf.memlimit, "memlimit", sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE,
      sodium.crypto_pwhash_MEMLIMIT_SENSITIVE),
    nonce: hexField(cipher.nonce, "nonce", sodium.crypto_secretbox_NONCEBYTES),
    ciphertext: hexField(cipher.ciphertext, "ciphertext"),
    publicKey: hexField(document.public_key, "public_key", PUBLIC_KEY_BYTES),
    address: document.address,
  };
}

/** The checked fields of a keystore file and the address its public key has. */
async function readKeystore(keystoreJsonText) {
  await sodium.ready;
  const fields = readKeystoreFields(parseKeystoreText(keystoreJsonText));
  const address = formatAddress(fields.publicKey);
  if (fields.address !== address) {
    throw failure("BadKeystore", "keystore is corrupt: its address does not match its public key");
  }
  return { ...fields, address };
}

/**
 * What a keystore file says about itself, without the password: {address, publicKey}.
 * Throws BadKeystore if it is not a usable keystore.
 */
export async function describeKeystore(keystoreJsonText) {
  const { address, publicKey } = await readKeystore(keystoreJsonText);
  return { address, publicKey };
}

/**
 * Open a keystore with the payment password: {seed, publicKey, address}.
 * Throws WrongPassword (wrong password, or a modified ciphertext — SecretBox cannot tell them
 * apart) or BadKeystore (anything else wrong with the file). The caller should `wipe(seed)`.
 */
export async function decryptKeystore(keystoreJsonText, password) {
  const keystore = await readKeystore(keystoreJsonText);
  const key = sodium.crypto_pwhash(sodium.crypto_secretbox_KEYBYTES, new TextEncoder().encode(password),
    keystore.salt, keystore.opslimit, keystore.memlimit, sodium.crypto_pwhash_ALG_ARGON2ID13);
  let seed;
  try {
    seed = sodium.crypto_secretbox_open_easy(keystore.ciphertext, keystore.nonce, key);
  } catch {
    throw failure("WrongPassword", "wrong password (or the keystore was modified)");
  } finally {
    wipe(key);
  }
  if (seed.length !== SEED_BYTES) {
    wipe(seed);
    throw failure("BadKeystore", "keystore is corrupt: the secret is not an ed25519 seed");
  }
  const pair = sodium.crypto_sign_seed_keypair(seed);
  wipe(pair.privateKey);
  if (!bytesEqual(pair.publicKey, keystore.publicKey)) {
    wipe(seed);
    throw failure("BadKeystore", "keystore is corrupt: the key does not match its public key");
  }
  return { seed, publicKey: keystore.publicKey, address: keystore.address };
}

/** Overwrite secret bytes once they are no longer needed. */
export function wipe(bytes) {
  if (bytes) sodium.memzero(bytes);
}

// --- signing -------------------------------------------------------------------------

/** The chain id and sender public key at the head of a transaction payload, or a BadPayload error. */
function readPayloadHead(payload) {
  if (!(payload instanceof Uint8Array) || payload[0] !== MSGPACK_FIXARRAY_6) {
    throw failure("BadPayload", "the payload is not a transaction");
  }
  let offset = 1;
  let chainLength;
  if ((payload[offset] & 0xe0) === MSGPACK_FIXSTR) {
    chainLength = payload[offset] & 0x1f;
    offset += 1;
  } else if (payload[offset] === MSGPACK_STR8 && payload[offset + 1] > 31) {
    chainLength = payload[offset + 1];
    offset += 2;
  } else {
    throw failure("BadPayload", "the payload does not start with a chain id");
  }
  if (chainLength > CHAIN_ID_CHARS_MAX) throw failure("BadPayload", "the payload's chain id is too long");
  const chainId = payload.subarray(offset, offset + chainLength);
  offset += chainLength;
  if (payload[offset] !== MSGPACK_BIN8 || payload[offset + 1] !== PUBLIC_KEY_BYTES) {
    throw failure("BadPayload", "the payload has no sender public key");
  }
  const senderPublicKey = payload.subarray(offset + 2, offset + 2 + PUBLIC_KEY_BYTES);
  if (senderPublicKey.length !== PUBLIC_KEY_BYTES) throw failure("BadPayload", "the payload is truncated");
  return { chainId, senderPublicKey };
}

/**
 * node/crypto.py `SigningDomain`: the network a signature is for, {chainId, genesisHash}, from the
 * chain id and the 0x-hex genesis hash the gateway names. Throws BadPayload on a malformed hash.
 */
export function signingDomain(chainId, genesisHashHex) {
  let genesisHash;
  try {
    genesisHash = hexToBytes(String(genesisHashHex).replace(/^0x/, ""));
  } catch {
    throw failure("BadPayload", "the network's genesis hash is not hex");
  }
  if (genesisHash.length !== GENESIS_HASH_BYTES) {
    throw failure("BadPayload", `the network's genesis hash must be ${GENESIS_HASH_BYTES} bytes`);
  }
  return { chainId, genesisHash };
}

/**
 * node/crypto.py `_signing_message`:
 * len(tag) ‖ tag ‖ len(chain id) ‖ chain id ‖ genesis hash ‖ payload.
 */
function signingMessage(chainIdBytes, genesisHash, payload) {
  const tag = new TextEncoder().encode(TAG_TRANSACTION);
  const message = new Uint8Array(2 + tag.length + chainIdBytes.length + genesisHash.length + payload.length);
  let offset = 0;
  for (const part of [[tag.length], tag, [chainIdBytes.length], chainIdBytes, genesisHash, payload]) {
    message.set(part, offset);
    offset += part.length;
  }
  return message;
}

/**
 * The signed transaction bytes for `payload` (the canonical encoding of an unsigned transaction)
 * on the network `domain` (from `signingDomain`), exactly what node/transactions.py
 * `sign_transaction` makes. Refuses (BadPayload) a payload for another chain id than the
 * domain's or another sender than the seed's key.
 */
export async function signPayload(seed, domain, payload) {
  await sodium.ready;
  const head = readPayloadHead(payload);
  const chainIdBytes = new TextEncoder().encode(domain.chainId);
  if (!bytesEqual(head.chainId, chainIdBytes)) {
    throw failure("BadPayload", `the transaction is not for chain ${domain.chainId}`);
  }
  if (!(domain.genesisHash instanceof Uint8Array) || domain.genesisHash.length !== GENESIS_HASH_BYTES) {
    throw failure("BadPayload", "the network has no genesis hash to sign for");
  }
  const signedLength = 1 + payload.length + 2 + SIGNATURE_BYTES;
  if (signedLength > SIGNED_TX_BYTES_MAX) {
    throw failure("BadPayload", `a payment transaction is at most ${SIGNED_TX_BYTES_MAX} bytes`);
  }
  const pair = sodium.crypto_sign_seed_keypair(seed);
  try {
    if (!bytesEqual(head.senderPublicKey, pair.publicKey)) {
      throw failure("BadPayload", "the transaction is for another key than this keystore's");
    }
    const signature = sodium.crypto_sign_detached(signingMessage(chainIdBytes, domain.genesisHash, payload),
      pair.privateKey);
    const signed = new Uint8Array(signedLength);
    signed[0] = MSGPACK_FIXARRAY_2;
    signed.set(payload, 1);
    signed[1 + payload.length] = MSGPACK_BIN8;
    signed[2 + payload.length] = SIGNATURE_BYTES;
    signed.set(signature, 3 + payload.length);
    return signed;
  } finally {
    wipe(pair.privateKey);
  }
}
