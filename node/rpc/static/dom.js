// Building the page safely: every piece of chain data goes in as text (textContent), never as markup.

import { call, isNotFound } from "./rpc.js";

const SVG_NAMESPACE = "http://www.w3.org/2000/svg";

function append(parent, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : String(child));
  }
  return parent;
}

/** An HTML element: `element("td", {className: "hash", title: "…"}, "text", otherElement)`. */
export function element(tag, properties = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(properties)) {
    if (value === undefined || value === null) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else node[name] = value;
  }
  return append(node, children);
}

/** An SVG element; attributes are set with setAttribute (numbers and class names only, never markup). */
export function svgElement(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG_NAMESPACE, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return append(node, children);
}

export function link(href, text, className) {
  return element("a", { href, className }, text);
}

// --- where each kind of page lives (hash routes, so every page is deep-linkable) -------------

export const routes = {
  home: () => "#/",
  block: (heightOrHash) => `#/block/${encodeURIComponent(heightOrHash)}`,
  tx: (hash) => `#/tx/${encodeURIComponent(hash)}`,
  account: (address) => `#/account/${encodeURIComponent(address)}`,
  order: (orderId) => `#/order/${encodeURIComponent(orderId)}`,
  search: (query) => `#/search/${encodeURIComponent(query)}`,
};

export function shortHash(hash) {
  return hash.length > 18 ? `${hash.slice(0, 10)}…${hash.slice(-6)}` : hash;
}

function shortAddress(address) {
  return address.length > 20 ? `${address.slice(0, 12)}…${address.slice(-6)}` : address;
}

export function blockLink(height) {
  return link(routes.block(height), `#${height}`);
}

export function txLink(hash, full = false) {
  return link(routes.tx(hash), full ? hash : shortHash(hash), "mono");
}

/** A link to an account, named when it is a validator (or another known name). */
export function accountLink(address, names, full = false) {
  const name = names && names.get(address);
  const text = full ? address : shortAddress(address);
  const anchor = link(routes.account(address), name ? `${name} (${text})` : text, "mono");
  anchor.title = address;
  return anchor;
}

export function orderLink(orderId, full = false) {
  return link(routes.order(orderId), full ? orderId : shortHash(orderId), "mono");
}

// --- numbers and times --------------------------------------------------------------------

/** Minor units as a decimal amount with its asset code, e.g. 1250 CNY (2 decimals) -> "12.50 CNY". */
export function formatAmount(amount, asset, decimalsByAsset) {
  const decimals = decimalsByAsset.get(asset);
  if (decimals === undefined || decimals === 0) return `${amount} ${asset}`;
  const digits = String(Math.abs(amount)).padStart(decimals + 1, "0");
  const whole = digits.slice(0, -decimals);
  const fraction = digits.slice(-decimals);
  return `${amount < 0 ? "-" : ""}${Number(whole).toLocaleString("en-US")}.${fraction} ${asset}`;
}

export function formatCount(value) {
  return Number(value).toLocaleString("en-US");
}

export function formatDuration(milliseconds) {
  if (milliseconds === null || milliseconds === undefined) return "–";
  if (milliseconds < 1000) return `${Math.round(milliseconds)} ms`;
  if (milliseconds < 60000) return `${(milliseconds / 1000).toFixed(milliseconds < 10000 ? 2 : 1)} s`;
  if (milliseconds < 3600000) {
    const seconds = Math.round(milliseconds % 60000 / 1000);
    return `${Math.floor(milliseconds / 60000)} min${seconds ? ` ${seconds} s` : ""}`;
  }
  return `${(milliseconds / 3600000).toFixed(1)} h`;
}

/** "12 s ago" from two times on the same clock (the node's, so a skewed browser clock does not matter). */
export function formatAge(thenMs, nowMs) {
  return `${formatDuration(Math.max(0, nowMs - thenMs))} ago`;
}

export function formatTime(milliseconds) {
  const date = new Date(milliseconds);
  return `${date.toLocaleString("en-GB", { hour12: false })} (${date.toISOString()})`;
}

// --- small building blocks -----------------------------------------------------------------

/** A two-column table of [label, value] rows; rows whose value is null or undefined are left out. */
export function fieldTable(rows) {
  const body = rows
    .filter(([, value]) => value !== null && value !== undefined)
    .map(([label, value]) => element("tr", {}, element("th", { scope: "row" }, label), element("td", {}, value)));
  return element("table", { className: "fields" }, element("tbody", {}, body));
}

/** A table with a header row; `rows` are arrays of cell contents. */
export function dataTable(headings, rows, className = "data") {
  const headingCells = headings.map((heading) => element("th", { scope: "col" }, heading));
  const head = element("thead", {}, element("tr", {}, headingCells));
  const bodyRows = rows.map((cells) => element("tr", {}, cells.map((cell) => element("td", {}, cell))));
  const body = element("tbody", {}, bodyRows);
  return element("div", { className: "table-scroll" }, element("table", { className }, head, body));
}

export function badge(text, tone = "neutral") {
  return element("span", { className: `badge badge-${tone}` }, text);
}

export function section(title, ...children) {
  return element("section", { className: "panel" }, element("h2", {}, title), ...children);
}

export function notFound(what, detail) {
  return element("section", { className: "panel not-found", dataset: { state: "not-found" } },
    element("h1", {}, "Not found"),
    element("p", {}, what),
    detail ? element("p", { className: "muted" }, detail) : null,
    element("p", {}, link(routes.home(), "Back to the overview")));
}

export function errorPanel(message) {
  return element("section", { className: "panel error" },
    element("h1", {}, "Something went wrong"), element("p", {}, message));
}

/** The panel for a failed lookup: "not found" when the node said so, otherwise what went wrong. */
export function failurePanel(error, what) {
  return isNotFound(error) ? notFound(what, error.message) : errorPanel(error.message);
}

/** The result of one call, or null after `view` shows why there is none (`what` names the missing thing). */
export async function lookup(view, method, params, what) {
  try {
    return await call(method, params);
  } catch (error) {
    view.replaceChildren(failurePanel(error, what));
    return null;
  }
}

export function mono(text) {
  return element("span", { className: "mono" }, text);
}

export function sleep(milliseconds) {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}
