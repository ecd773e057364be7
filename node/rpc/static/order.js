// An order page: the order as the system orders contract holds it.

import { badge, blockLink, element, fieldTable, lookup, mono, section } from "./dom.js";
import { fieldRows } from "./values.js";
import { stateTone } from "./account.js";

const HEIGHT_KEYS = new Set(["created_height", "shipped_height", "ship_by"]);
const SHOWN_FIRST = new Set(["order_id", "state"]);

export async function renderOrder(view, context, orderId) {
  const order = await lookup(view, "order_get", [orderId], `No order ${orderId}.`);
  if (!order) return;
  const rest = Object.fromEntries(Object.entries(order)
    .filter(([key]) => !SHOWN_FIRST.has(key) && !HEIGHT_KEYS.has(key)));
  view.replaceChildren(
    element("h1", {}, "Order"),
    section("Order", fieldTable([
      ["order id", mono(order.order_id)],
      ["state", badge(order.state, stateTone(order.state))],
      ...fieldRows(rest, context),
    ])),
    section("Timeline (block heights)", fieldTable([
      ["created", heightCell(order.created_height)],
      ["ship by", typeof order.ship_by === "number" ? `block ${order.ship_by}` : null],
      ["shipped", heightCell(order.shipped_height)],
    ])),
  );
}

/** A block link for a height the chain has reached; 0 means "not yet". */
function heightCell(height) {
  if (typeof height !== "number") return null;
  return height > 0 ? blockLink(height) : "not yet";
}
