// A transaction page: its status, what it asked for, and its receipt with the events it caused.

import {
  accountLink, badge, blockLink, element, fieldTable, formatAmount, lookup, mono, notFound, section,
} from "./dom.js";
import { eventTable, fieldRows, outcomeBadge } from "./values.js";

export async function renderTransaction(view, context, hash) {
  const record = await lookup(view, "tx_get", [hash], `No transaction ${hash}.`);
  if (!record) return;
  if (record.status === "unknown") {
    view.replaceChildren(notFound(`No transaction ${hash}.`,
      "This node has not seen it: not committed, not pending, not recently rejected."));
    return;
  }
  view.replaceChildren(element("h1", {}, "Transaction"), ...sectionsFor(record, context));
}

function sectionsFor(record, context) {
  const status = fieldTable([["hash", mono(record.hash)], ["status", statusBadge(record)]]);
  if (record.status === "pending") {
    return [section("Status", status, element("p", {}, "Waiting in this node's mempool for a block."))];
  }
  if (record.status === "rejected") {
    return [section("Status", status, fieldTable([["rule", record.rule], ["message", record.message]]))];
  }
  const { transaction, receipt } = record;
  return [
    section("Status", status, fieldTable([
      ["block", element("span", {}, blockLink(record.height), " ", mono(record.block_hash))],
      ["position in block", String(record.index)],
    ])),
    section("Transaction", fieldTable([
      ["kind", transaction.kind.replaceAll("_", " ")],
      ["sender", accountLink(transaction.sender, context.names, true)],
      ["nonce", String(transaction.nonce)],
      ["fee offered", formatAmount(transaction.fee, transaction.fee_asset, context.decimals)],
      ["chain id", transaction.chain_id],
    ]), element("h3", {}, "Body"), fieldTable(fieldRows(transaction.body, context))),
    section("Receipt", fieldTable([
      ["outcome", outcomeBadge(receipt)],
      ["code", receipt.code || null],
      ["message", receipt.message || null],
      ["fee paid", formatAmount(receipt.fee_paid, receipt.fee_asset, context.decimals)],
      ["gas used", String(receipt.gas_used)],
    ]), element("h3", {}, "Events"), eventTable(receipt.events, context)),
  ];
}

function statusBadge(record) {
  const tones = { committed: "good", pending: "accent", rejected: "bad" };
  return badge(record.status, tones[record.status] || "neutral");
}
