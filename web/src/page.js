/**
 * What the checkout and recharge pages share: the gateway API client, the keystore picker
 * (remembered in localStorage, encrypted as it is), the decrypt → prepare → sign sequence,
 * bounded status polling, and small DOM helpers. Page text is set with textContent only.
 */

import {
  KEYSTORE_BYTES_MAX, bytesToHex, decryptKeystore, describeKeystore, hexToBytes, signPayload, signingDomain, wipe,
} from "./signer.js";

export const KEYSTORE_STORAGE_KEY = "paychain.keystore";
export const POLL_INTERVAL_MS = 500;
export const POLLS_MAX = 1200; // ten minutes of polling, then the page says to reload later
const PAINT_WAIT_MS = 50; // lets the browser show "Decrypting key…" before argon2id holds the main thread

// --- DOM -----------------------------------------------------------------------------

export function element(id) {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`the page has no #${id}`);
  return found;
}

export function meta(name) {
  const tag = document.querySelector(`meta[name="${name}"]`);
  return tag === null ? "" : tag.content;
}

/** Show `text` in #message; `kind` is "error" or "info" (styled by the data-kind attribute). */
export function showMessage(text, kind = "error") {
  const message = element("message");
  message.textContent = text;
  message.dataset.kind = kind;
  message.hidden = false;
}

export function clearMessage() {
  const message = element("message");
  message.textContent = "";
  message.hidden = true;
}

/** #status shows `label`; its data-state attribute is the machine-readable `state`. */
export function setStatus(state, label) {
  const status = element("status");
  status.dataset.state = state;
  status.textContent = label;
}

/** "12.34 CNY" from 1234 minor units of an asset with `decimals` digits after the point. */
export function formatAmount(minorUnits, asset, decimals) {
  if (decimals === 0) return `${minorUnits} ${asset}`;
  const scale = 10 ** decimals;
  const whole = Math.trunc(minorUnits / scale);
  const fraction = String(minorUnits % scale).padStart(decimals, "0");
  return `${whole}.${fraction} ${asset}`;
}

/** Minor units from text like "12", "12.3" or "12.34" (at most `decimals` digits after the point); null if it
 * is not such an amount. */
export function parseAmount(text, decimals) {
  const fraction = decimals > 0 ? `(?:\\.(\\d{1,${decimals}}))?` : "";
  const match = new RegExp(`^\\s*(\\d{1,15})${fraction}\\s*$`).exec(text);
  if (match === null) return null;
  return Number(match[1]) * 10 ** decimals + Number((match[2] ?? "").padEnd(decimals, "0") || "0");
}

export function sleep(milliseconds) {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

// --- gateway API ---------------------------------------------------------------------

/** An error response of the gateway: {"error": {"code", "message"}}, or a network failure. */
export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
  }
}

async function request(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.headers["X-CSRF-Token"] = meta("csrf-token");
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError("network", "Cannot reach the payment server — check your connection.", 0);
  }
  const document = await response.json().catch(() => null);
  if (!response.ok) {
    const error = document?.error;
    throw new ApiError(error?.code ?? "http_error",
      error?.message ?? `The payment server answered with HTTP ${response.status}.`, response.status);
  }
  if (document === null) throw new ApiError("bad_response", "The payment server sent an unreadable answer.", 0);
  return document;
}

export const getJson = (path) => request("GET", path);
export const postJson = (path, body) => request("POST", path, body);

// --- keystore picker -----------------------------------------------------------------

function loadRememberedKeystore() {
  try {
    return localStorage.getItem(KEYSTORE_STORAGE_KEY);
  } catch {
    return null; // storage disabled: the shopper picks the file each time
  }
}

function saveRememberedKeystore(text) {
  try {
    if (text === null) localStorage.removeItem(KEYSTORE_STORAGE_KEY);
    else localStorage.setItem(KEYSTORE_STORAGE_KEY, text);
  } catch {
    // Storage disabled or full: the keystore still works for this visit.
  }
}

/**
 * Wires #keystore-file, #keystore-saved, #keystore-address and #forget-keystore. Returns a
 * function giving the current keystore's JSON text, or null. The keystore stays encrypted in
 * storage; the password is never stored.
 */
export function setupKeystorePicker() {
  let keystoreText = null;
  const input = element("keystore-file");

  async function use(text, remember) {
    const { address } = await describeKeystore(text);
    keystoreText = text;
    element("keystore-address").textContent = address;
    element("keystore-saved").hidden = false;
    if (remember) saveRememberedKeystore(text);
  }

  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (file === undefined) return;
    clearMessage();
    try {
      if (file.size > KEYSTORE_BYTES_MAX) throw new Error("this file is too large to be a keystore");
      await use(await file.text(), true);
    } catch (error) {
      showMessage(`This keystore file cannot be used: ${error.message}`);
    }
  });
  element("forget-keystore").addEventListener("click", () => {
    keystoreText = null;
    saveRememberedKeystore(null);
    input.value = "";
    element("keystore-saved").hidden = true;
  });

  const remembered = loadRememberedKeystore();
  if (remembered !== null) use(remembered, false).catch(() => saveRememberedKeystore(null));
  return () => keystoreText;
}

// --- signing sequence ----------------------------------------------------------------

/**
 * Decrypt the keystore, ask the gateway to `prepare(publicKeyHex)` a payload, and sign it for
 * `chainId` (the page's own idea of the network; a payload for another chain is refused) and the
 * genesis hash the gateway names with the payload (`prepared.genesis_hash`).
 * `onStep` receives "Decrypting key…" and "Signing…". Returns {prepared, signedHex}.
 */
export async function decryptAndSign({ keystoreText, password, chainId, prepare, onStep }) {
  onStep("Decrypting key…");
  await sleep(PAINT_WAIT_MS);
  const key = await decryptKeystore(keystoreText, password);
  try {
    onStep("Signing…");
    const prepared = await prepare(bytesToHex(key.publicKey));
    const domain = signingDomain(chainId, prepared.genesis_hash);
    const signed = await signPayload(key.seed, domain, hexToBytes(prepared.payload));
    return { prepared, signedHex: bytesToHex(signed) };
  } finally {
    wipe(key.seed);
  }
}

/** What to tell the shopper about an error from the signing sequence or the API. */
export function describeError(error) {
  switch (error.name) {
    case "WrongPassword":
      return "Wrong payment password — nothing was charged.";
    case "BadKeystore":
      return `This keystore file cannot be used: ${error.message}`;
    case "BadPayload":
      return `The payment server asked for an unexpected signature, so nothing was signed: ${error.message}`;
    case "ApiError":
      return error.message;
    default:
      return `Something went wrong: ${error.message}`;
  }
}

// --- polling -------------------------------------------------------------------------

/**
 * Call `read()` every POLL_INTERVAL_MS, handing each answer to `onUpdate`, until `isDone(answer)`;
 * a failed read goes to `onError` and polling goes on. Returns the final answer, or null after POLLS_MAX.
 */
export async function pollUntil({ read, isDone, onUpdate, onError }) {
  for (let poll = 0; poll < POLLS_MAX; poll += 1) {
    await sleep(POLL_INTERVAL_MS);
    let answer;
    try {
      answer = await read();
    } catch (error) {
      onError(error);
      continue;
    }
    onUpdate(answer);
    if (isDone(answer)) return answer;
  }
  return null;
}
