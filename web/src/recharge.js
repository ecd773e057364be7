/**
 * The recharge page (gateway/web/recharge.html): the shopper asks the gateway to credit an amount
 * of an asset in a region; the RechargeRequest is signed in the browser, submitted, and followed
 * until the gateway posts or voids it. Owns the recharge state labels.
 */

import {
  clearMessage, decryptAndSign, describeError, element, formatAmount, getJson, parseAmount, pollUntil, postJson,
  setStatus, setupKeystorePicker, showMessage,
} from "./page.js";

const STATE_LABELS = {
  ready: "Ready",
  submitted: "Request submitted — waiting for the chain…",
  requested: "Requested — waiting for the gateway to receive your funds…",
  posted: "Credited",
  voided: "Voided by the gateway — nothing was credited",
  failed: "Failed",
};
const FINAL_STATES = new Set(["posted", "voided", "failed"]);

const rechargeButton = element("recharge");
let currentKeystore = () => null;
let options = null; // the gateway's regions, assets and chain ids
let latestRecharge = 0; // only the latest recharge's polling updates the page

function fillSelect(select, values) {
  for (const value of values) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = value;
    select.append(option);
  }
}

function renderOptions() {
  fillSelect(element("region"), options.regions);
  fillSelect(element("asset"), options.assets);
  element("gateway-address").textContent = options.gateway_address;
}

/** Show a recharge's state (and the balance once the gateway reports it). */
function renderRecharge(recharge) {
  setStatus(recharge.state, STATE_LABELS[recharge.state] ?? recharge.state);
  if (recharge.balance != null) {
    element("balance").textContent = `Balance: ${formatAmount(recharge.balance, recharge.asset, options.decimals[recharge.asset])}`;
  }
  if (recharge.state === "failed") showMessage(`The recharge failed: ${recharge.error ?? "the chain rejected it"}.`);
  if (recharge.state === "voided" && recharge.error) showMessage(recharge.error, "info");
}

/** Poll a submitted recharge until it is final, or until a newer recharge replaces it on the page. */
async function follow(txHash, region) {
  latestRecharge += 1;
  const recharge = latestRecharge;
  const isLatest = () => recharge === latestRecharge;
  const path = `/api/recharge/${encodeURIComponent(txHash)}?region=${encodeURIComponent(region)}`;
  const final = await pollUntil({
    read: () => getJson(path),
    isDone: (answer) => !isLatest() || FINAL_STATES.has(answer.state),
    onUpdate: (answer) => {
      if (!isLatest()) return;
      clearMessage();
      renderRecharge(answer);
    },
    onError: (error) => {
      if (isLatest()) showMessage(`Checking the recharge failed (${error.message}); retrying…`, "info");
    },
  });
  if (final === null && isLatest()) {
    showMessage("The request is still open; the gateway credits it when your funds arrive.", "info");
  }
}

/** The form's request, or a message saying what is missing. */
function readForm() {
  const asset = element("asset").value;
  const amount = parseAmount(element("amount").value, options.decimals[asset] ?? 0);
  if (amount === null || amount === 0) return { missing: "Type an amount, like 100.00." };
  if (currentKeystore() === null) return { missing: "Load your keystore file first." };
  if (element("password").value === "") return { missing: "Type your payment password." };
  return { request: { asset, amount, region: element("region").value } };
}

async function signAndSubmit(request) {
  const { signedHex } = await decryptAndSign({
    keystoreText: currentKeystore(),
    password: element("password").value,
    chainId: options.chain_ids[request.region],
    prepare: async (publicKey) => {
      const prepared = await postJson("/api/recharge/prepare", { public_key: publicKey, ...request });
      element("summary").textContent = prepared.request_summary;
      return prepared;
    },
    onStep: (step) => { rechargeButton.textContent = step; },
  });
  rechargeButton.textContent = "Submitting…";
  const submitted = await postJson("/api/recharge/submit", { signed: signedHex, region: request.region });
  element("password").value = "";
  element("tx-hash").textContent = submitted.tx_hash;
  element("receipt").hidden = false;
  renderRecharge({ state: submitted.state, balance: null });
  return submitted;
}

async function recharge(event) {
  event.preventDefault();
  const { missing, request } = readForm();
  if (missing !== undefined) {
    showMessage(missing);
    return;
  }
  clearMessage();
  rechargeButton.disabled = true;
  let submitted = null;
  try {
    submitted = await signAndSubmit(request);
  } catch (error) {
    showMessage(describeError(error));
  } finally {
    rechargeButton.disabled = false;
    rechargeButton.textContent = "Recharge";
  }
  // A request can wait long for the off-chain funds: the form is free again while the page follows it.
  if (submitted !== null && !FINAL_STATES.has(submitted.state)) await follow(submitted.tx_hash, request.region);
}

async function start() {
  currentKeystore = setupKeystorePicker();
  element("recharge-form").addEventListener("submit", recharge);
  try {
    options = await getJson("/api/recharge/options");
  } catch (error) {
    setStatus("unavailable", "Unavailable");
    showMessage(describeError(error));
    return;
  }
  renderOptions();
  setStatus("ready", STATE_LABELS.ready);
  rechargeButton.disabled = false;
}

start();
