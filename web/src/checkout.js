/**
 * The checkout page (gateway/web/checkout.html): shows a payment's merchant and options, signs
 * the chosen option's order in the browser, submits it, and follows the payment until it is final.
 * Owns the page's state labels and which states allow paying; the gateway decides every state.
 */

import {
  clearMessage, decryptAndSign, describeError, element, formatAmount, getJson, meta, pollUntil, postJson,
  setStatus, setupKeystorePicker, showMessage,
} from "./page.js";

const STATE_LABELS = {
  awaiting_payment: "Awaiting payment",
  submitted: "Payment submitted — waiting for the chain to confirm it…",
  paid: "Paid",
  shipped: "Paid — the merchant has shipped the order",
  completed: "Completed",
  canceled: "Canceled",
  refund_requested: "Paid — refund requested",
  refunded: "Refunded",
  refund_rejected: "Paid — refund rejected",
  expired: "Expired",
  failed: "Payment failed",
};
const PAYABLE_STATES = new Set(["awaiting_payment", "failed"]);
const FOLLOWED_STATES = new Set(["awaiting_payment", "submitted"]); // anything else is final for the shopper
const EXPIRED_MESSAGE = "This checkout has expired — nothing was charged.";
const EXPIRED_ERROR_CODE = "checkout_expired"; // the gateway's refusal once the deadline has passed
const EXPIRY_CHECK_DELAY_MS = 1000;
const TIMER_DELAY_MS_MAX = 2 ** 31 - 1; // setTimeout's limit

const paymentId = meta("payment-id");
const paymentPath = `/api/checkout/${encodeURIComponent(paymentId)}`;
const payButton = element("pay");
let currentKeystore = () => null;
let checkout = null; // the gateway's latest answer for this payment
let working = false; // signing or submitting
let following = false; // polling the gateway for the payment's progress

function renderOptions(options, chosen) {
  const list = element("options");
  for (const option of options) {
    const label = document.createElement("label");
    label.className = "option";
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "option";
    radio.value = option.product_id;
    radio.checked = options.length === 1 || option.product_id === chosen;
    const text = document.createElement("span");
    const price = formatAmount(option.unit_price, option.currency, option.decimals);
    text.textContent = `${option.name} — ${option.quantity} × ${price}`;
    const total = document.createElement("strong");
    total.textContent = formatAmount(option.total, option.currency, option.decimals);
    label.append(radio, text, total);
    list.append(label);
  }
}

function renderPayment() {
  element("merchant-name").textContent = checkout.merchant.name;
  element("merchant-address").textContent = checkout.merchant.address;
  element("expires").textContent = `Pay before ${new Date(checkout.expires_at * 1000).toLocaleString()}`;
  renderOptions(checkout.options, checkout.chosen);
}

/** Show the latest state; `announceFailure` also shows the gateway's error for a failed payment. */
function renderState(announceFailure) {
  setStatus(checkout.state, STATE_LABELS[checkout.state] ?? checkout.state);
  element("order-id").textContent = checkout.order_id ?? "";
  element("tx-hash").textContent = checkout.tx_hash ?? "";
  element("receipt").hidden = checkout.order_id == null && checkout.tx_hash == null;
  const explorer = element("explorer-link");
  explorer.hidden = checkout.explorer_url == null;
  if (checkout.explorer_url != null) explorer.href = checkout.explorer_url;
  payButton.disabled = working || !PAYABLE_STATES.has(checkout.state);
  if (checkout.state === "expired") showMessage(EXPIRED_MESSAGE);
  else if (checkout.state === "failed" && announceFailure) {
    showMessage(`The payment failed: ${checkout.error ?? "the chain rejected it"}. You can try again.`);
  }
}

async function refresh(announceFailure) {
  checkout = await getJson(paymentPath);
  renderState(announceFailure);
}

/** Poll the payment while the chain works on it; stops at a final state. */
async function follow() {
  if (following) return;
  following = true;
  const final = await pollUntil({
    read: () => getJson(paymentPath),
    isDone: (answer) => !FOLLOWED_STATES.has(answer.state),
    onUpdate: (answer) => {
      clearMessage();
      checkout = answer;
      renderState(true);
    },
    onError: (error) => showMessage(`Checking the payment failed (${error.message}); retrying…`, "info"),
  });
  following = false;
  if (final === null) showMessage("Still waiting for the chain — reload this page later to see the result.", "info");
}

function scheduleExpiryCheck() {
  const delay = checkout.expires_at * 1000 - Date.now() + EXPIRY_CHECK_DELAY_MS;
  if (delay > TIMER_DELAY_MS_MAX) return;
  setTimeout(() => {
    if (!working && PAYABLE_STATES.has(checkout.state)) refresh(false).catch(() => {});
  }, Math.max(delay, 0));
}

function selectedProductId() {
  const chosen = element("options").querySelector('input[name="option"]:checked');
  return chosen === null ? null : chosen.value;
}

function missingInput() {
  if (selectedProductId() === null) return "Choose what to pay for.";
  if (currentKeystore() === null) return "Load your keystore file first.";
  if (element("password").value === "") return "Type your payment password.";
  return null;
}

async function signAndSubmit() {
  const { signedHex } = await decryptAndSign({
    keystoreText: currentKeystore(),
    password: element("password").value,
    chainId: checkout.chain_id,
    prepare: async (publicKey) => {
      const prepared = await postJson(`${paymentPath}/prepare`,
        { public_key: publicKey, product_id: selectedProductId() });
      element("summary").textContent = prepared.summary;
      return prepared;
    },
    onStep: (step) => { payButton.textContent = step; },
  });
  payButton.textContent = "Submitting…";
  const submitted = await postJson(`${paymentPath}/submit`, { signed: signedHex });
  element("password").value = "";
  checkout = { ...checkout, state: submitted.state, tx_hash: submitted.tx_hash, error: null };
}

async function pay(event) {
  event.preventDefault();
  const missing = missingInput();
  if (missing !== null) {
    showMessage(missing);
    return;
  }
  clearMessage();
  working = true;
  payButton.disabled = true;
  let submitted = false;
  try {
    await signAndSubmit();
    submitted = true;
  } catch (error) {
    showMessage(describeError(error));
    if (error.code === EXPIRED_ERROR_CODE) {
      checkout = { ...checkout, state: "expired" }; // the gateway said so before its record caught up
    } else if (error.name === "ApiError") {
      await refresh(false).catch(() => {}); // the gateway may have moved on (or the transaction went through)
    }
  } finally {
    working = false;
    payButton.textContent = "Pay";
    renderState(false);
  }
  if (submitted || checkout.state === "submitted") await follow();
}

async function start() {
  currentKeystore = setupKeystorePicker();
  element("pay-form").addEventListener("submit", pay);
  try {
    checkout = await getJson(paymentPath);
  } catch (error) {
    setStatus("unavailable", "Unavailable");
    showMessage(describeError(error));
    return;
  }
  renderPayment();
  renderState(true);
  scheduleExpiryCheck();
  if (checkout.state === "submitted") await follow();
}

start();
