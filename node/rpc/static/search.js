// Search: a block height, a 64-hex hash (block, then transaction, then order), or a pay1… address.

import { batch } from "./rpc.js";
import { notFound, routes } from "./dom.js";

const HEIGHT_PATTERN = /^\d{1,15}$/;
const HASH_PATTERN = /^(0x)?[0-9a-f]{64}$/i;
const HINT = "Search takes a block height, a block hash, a transaction hash or an order id (64 hex digits), "
  + "or an account address (pay1…).";

export async function renderSearch(view, context, query) {
  const text = query.trim();
  const outcome = await resolve(text);
  if (!view.isConnected) return;  // the reader went elsewhere meanwhile: do not pull them back
  if (outcome.route) {
    location.replace(outcome.route);  // the search itself leaves no entry in the history
    return;
  }
  view.replaceChildren(notFound(`Nothing on this chain matches “${text}”.`, outcome.reason || HINT));
}

/** {route} of the page for `text`, or {reason} it names nothing. */
async function resolve(text) {
  if (HEIGHT_PATTERN.test(text)) {
    const [block] = await batch([["chain_getBlock", [Number(text)]]]);
    if (block.result) return { route: routes.block(block.result.header.height) };
    return { reason: `There is no block ${text} yet.` };
  }
  if (HASH_PATTERN.test(text)) return resolveHash(`0x${text.replace(/^0x/i, "").toLowerCase()}`);
  if (text.toLowerCase().startsWith("pay1")) {
    const [account] = await batch([["account_get", [text]]]);
    return account.result ? { route: routes.account(account.result.address) } : { reason: account.error.message };
  }
  return {};
}

async function resolveHash(hash) {
  const [block, transaction, order] = await batch([
    ["chain_getBlock", [hash]], ["tx_get", [hash]], ["order_get", [hash]],
  ]);
  if (block.result) return { route: routes.block(block.result.header.height) };
  if (transaction.result && transaction.result.status !== "unknown") return { route: routes.tx(hash) };
  if (order.result) return { route: routes.order(hash) };
  return { reason: "No block, transaction or order has this hash." };
}
