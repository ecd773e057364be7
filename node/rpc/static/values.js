// Showing chain values: addresses and ids become links, amounts get their asset's decimals, the rest is text.

import {
  accountLink, badge, element, fieldTable, formatAmount, mono, orderLink, txLink,
} from "./dom.js";

const ADDRESS_PATTERN = /^pay1[a-z2-7]{39}$/;
const HASH_PATTERN = /^0x[0-9a-f]{64}$/;
const HEX_PATTERN = /^0x(?:[0-9a-f]{2})+$/;
const AMOUNT_KEYS = new Set(["amount", "fee", "fee_paid", "min_fee", "total", "unit_price"]);
const TX_HASH_KEYS = new Set(["request_id", "tx_hash", "hash"]);
const NESTING_MAX = 4;

function isAddress(text) {
  return typeof text === "string" && ADDRESS_PATTERN.test(text);
}

/** Which asset an amount field of `owner` is in (fees name their own asset). */
function assetOf(key, owner) {
  if (key === "fee" || key === "fee_paid") return owner.fee_asset;
  return owner.asset ?? owner.currency;
}

function labelOf(key) {
  return key.replaceAll("_", " ");
}

/** Contract values carry bytes as {"bytes": "0x…"}: show them as the hex they are. */
function unwrapBytes(value) {
  const isBytes = value && typeof value === "object" && !Array.isArray(value)
    && Object.keys(value).length === 1 && typeof value.bytes === "string";
  return isBytes ? value.bytes : value;
}

/** The display of `owner[key]`. */
function renderValue(key, value, owner, context, depth = 0) {
  value = unwrapBytes(value);
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number" && AMOUNT_KEYS.has(key) && assetOf(key, owner)) {
    return formatAmount(value, assetOf(key, owner), context.decimals);
  }
  if (isAddress(value)) return accountLink(value, context.names, true);
  if (typeof value === "string" && HASH_PATTERN.test(value)) {
    if (key === "order_id") return orderLink(value, true);
    if (TX_HASH_KEYS.has(key)) return txLink(value, true);
    return mono(value);
  }
  if (typeof value === "string" && HEX_PATTERN.test(value)) return mono(value);
  if (typeof value === "object" && !Array.isArray(value) && depth < NESTING_MAX) {
    return fieldTable(fieldRows(value, context, depth + 1));
  }
  if (typeof value === "object") return mono(JSON.stringify(value));
  return String(value);
}

/** [label, display] rows for every field of an object, in the node's order. */
export function fieldRows(object, context, depth = 0) {
  return Object.entries(object).map(([key, value]) => [labelOf(key), renderValue(key, value, object, context, depth)]);
}

/** A one-line description of a transaction for lists: kind and what it moves or calls. */
export function describeTransaction(transaction, context) {
  const body = transaction.body;
  const kind = transaction.kind.replaceAll("_", " ");
  if (body.amount !== undefined && body.asset) {
    const target = body.recipient || body.gateway;
    return element("span", {}, `${kind} ${formatAmount(body.amount, body.asset, context.decimals)}`,
      target ? [body.recipient ? " to " : " via ", accountLink(target, context.names)] : null);
  }
  if (body.function) {
    return element("span", {}, `${kind} ${body.function}() on `, accountLink(body.contract, context.names));
  }
  if (body.account) return element("span", {}, `${kind} `, accountLink(body.account, context.names));
  if (body.request_id) return element("span", {}, `${kind} `, txLink(body.request_id));
  return kind;
}

export function outcomeBadge(receipt) {
  return receipt.success ? badge("success", "good") : badge(`failed: ${receipt.code}`, "bad");
}

/** Events of a receipt as a table: the event's name, then its fields (a contract's data unpacked). */
export function eventTable(events, context) {
  if (events.length === 0) return element("p", { className: "muted" }, "No events.");
  const rows = events.map((event) => {
    const { name, ...fields } = event;
    const shown = fields.data && typeof fields.data === "object" && !Array.isArray(fields.data)
      ? { contract: fields.contract, ...fields.data } : fields;
    const details = fieldTable(fieldRows(shown, context, 1));
    return element("tr", {}, element("th", { scope: "row" }, name), element("td", {}, details));
  });
  return element("table", { className: "fields events" }, element("tbody", {}, rows));
}
