// An account page: balances and registration, its transaction history, and its orders.

import { batch, call } from "./rpc.js";
import {
  accountLink, badge, blockLink, dataTable, element, failurePanel, fieldTable, formatAmount, mono, orderLink, section,
  txLink,
} from "./dom.js";
import { describeTransaction, outcomeBadge } from "./values.js";

const PAGE_ITEMS = 20;

export async function renderAccount(view, context, address) {
  const [account, history, orders] = await batch([
    ["account_get", [address]],
    ["account_getHistory", [address, PAGE_ITEMS]],
    ["order_list", { party: address, limit: PAGE_ITEMS }],
  ]);
  if (account.error) {
    view.replaceChildren(failurePanel(account.error, `No account ${address}.`));
    return;
  }
  const name = context.names.get(address);
  view.replaceChildren(
    element("h1", {}, name ? `Account ${name}` : "Account"),
    section("Summary", summaryTable(account.result, context)),
    section("Balances", balanceTable(account.result.balances, context)),
    section("History", historyPanel(address, history, context)),
    section("Orders", ordersPanel(address, orders, context)),
  );
}

function summaryTable(account, context) {
  return fieldTable([
    ["address", mono(account.address)],
    ["role", account.role || "none"],
    ["registered", account.registered ? badge("registered", "good") : badge("not registered", "neutral")],
    ["registered by", account.registered_by ? accountLink(account.registered_by, context.names, true) : null],
    ["KYC hash", account.kyc_hash ? mono(account.kyc_hash) : null],
    ["nonce (committed)", String(account.nonce)],
    ["next nonce (with pending)", String(account.pending_nonce)],
    ["suspended", account.suspended ? badge("suspended", "bad") : null],
    ["may deploy contracts", account.deployer ? "yes" : null],
    ["as of block", blockLink(account.height)],
  ]);
}

function balanceTable(balances, context) {
  const entries = Object.entries(balances);
  if (entries.length === 0) return element("p", { className: "muted" }, "No balances.");
  const rows = entries.map(([asset, amount]) => [asset, formatAmount(amount, asset, context.decimals)]);
  return dataTable(["Asset", "Balance"], rows);
}

function historyRows(items, context) {
  return items.map((item) => [
    blockLink(item.height),
    txLink(item.hash),
    describeTransaction(item.transaction, context),
    accountLink(item.transaction.sender, context.names),
    outcomeBadge(item.receipt),
  ]);
}

/** The newest page of history, and a button that appends older pages (following the node's cursor). */
function historyPanel(address, history, context) {
  if (history.error) return element("p", { className: "error-text" }, history.error.message);
  const { items, next } = history.result;
  if (items.length === 0) return element("p", { className: "muted" }, "No transactions.");
  const headings = ["Block", "Hash", "What", "Sender", "Outcome"];
  const holder = element("div", {}, dataTable(headings, historyRows(items, context)));
  let cursor = next;
  const button = element("button", { type: "button", className: "more", hidden: !cursor }, "Older");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const page = await call("account_getHistory", [address, PAGE_ITEMS, cursor]);
      holder.append(dataTable(headings, historyRows(page.items, context)));
      cursor = page.next;
    } catch (error) {
      holder.append(element("p", { className: "error-text" }, error.message));
    }
    button.disabled = false;
    button.hidden = !cursor;
  });
  return element("div", {}, holder, button);
}

function ordersPanel(address, orders, context) {
  if (orders.error) return element("p", { className: "muted" }, orders.error.message);
  if (orders.result.orders.length === 0) return element("p", { className: "muted" }, "No orders.");
  const rows = orders.result.orders.map((order) => [
    orderLink(order.order_id),
    order.buyer === address ? "buyer" : "merchant",
    badge(order.state, stateTone(order.state)),
    `${order.quantity} × ${order.product_id}`,
    formatAmount(order.total, order.currency, context.decimals),
    blockLink(order.height),
  ]);
  const more = orders.result.next ? element("p", { className: "muted" }, `Showing the newest ${PAGE_ITEMS}.`) : null;
  return element("div", {}, dataTable(["Order", "Role", "State", "Items", "Total", "Block"], rows), more);
}

export function stateTone(state) {
  if (state === "completed") return "good";
  if (state === "canceled" || state === "refunded" || state === "refund_rejected") return "neutral";
  if (state === "refund_requested") return "bad";
  return "accent";
}
