/**
 * Runs web/src/signer.js on the vectors tests/unit/test_browser_signer.py writes, and prints
 * one JSON document: the signer's constants and, per case, {"ok": …} or {"error": {name, message}}.
 * The Python test owns every assertion; this script only executes.
 *
 * Usage: node web/test/run_signer_vectors.mjs VECTORS.json
 */

import { readFileSync } from "node:fs";
import * as signer from "../src/signer.js";

const operations = {
  async describe(vector) {
    const { address, publicKey } = await signer.describeKeystore(vector.keystore);
    return { address, public_key: signer.bytesToHex(publicKey) };
  },
  async decrypt(vector) {
    const { seed, publicKey, address } = await signer.decryptKeystore(vector.keystore, vector.password);
    return { seed: signer.bytesToHex(seed), public_key: signer.bytesToHex(publicKey), address };
  },
  async sign(vector) {
    const { seed } = await signer.decryptKeystore(vector.keystore, vector.password);
    try {
      const domain = signer.signingDomain(vector.chain_id, vector.genesis_hash);
      const signed = await signer.signPayload(seed, domain, signer.hexToBytes(vector.payload));
      return { signed: signer.bytesToHex(signed) };
    } finally {
      signer.wipe(seed);
    }
  },
};

async function run(vector) {
  try {
    return { ok: await operations[vector.op](vector) };
  } catch (error) {
    return { error: { name: error.name, message: error.message } };
  }
}

const vectors = JSON.parse(readFileSync(process.argv[2], "utf8"));
const results = {};
for (const vector of vectors.cases) {
  results[vector.name] = await run(vector);
}
const constants = {
  keystore_bytes_max: signer.KEYSTORE_BYTES_MAX,
  signed_tx_bytes_max: signer.SIGNED_TX_BYTES_MAX,
  tag_transaction: signer.TAG_TRANSACTION,
};
process.stdout.write(JSON.stringify({ constants, results }));
