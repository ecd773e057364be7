// A block page: its header, the commit certificate that makes it final, and its transactions.

import { batch } from "./rpc.js";
import {
  accountLink, badge, blockLink, dataTable, element, failurePanel, fieldTable, formatCount, formatTime, link, mono,
  routes, section, txLink,
} from "./dom.js";
import { describeTransaction, outcomeBadge } from "./values.js";

// The node answers at most 100 calls per batch (limits.rpc_batch_requests_max): one batch of details.
const TRANSACTIONS_SHOWN_MAX = 100;

export async function renderBlock(view, context, reference) {
  const parameter = /^\d+$/.test(reference) ? Number(reference) : reference;
  const [found, status] = await batch([["chain_getBlock", [parameter]], ["node_status"]]);
  if (found.error) {
    view.replaceChildren(failurePanel(found.error, `No block ${reference} on this chain.`));
    return;
  }
  const { header, certificate, transactions } = found.result;
  const headHeight = status.result ? status.result.height : header.height;
  view.replaceChildren(
    element("h1", {}, `Block ${formatCount(header.height)}`),
    neighbours(header.height, headHeight),
    section("Header", headerTable(header, context)),
    certificateSection(header, certificate, context),
    section(`Transactions (${formatCount(transactions.length)})`, await transactionList(transactions, context)),
  );
}

function neighbours(height, headHeight) {
  return element("nav", { className: "neighbours" },
    height > 1 ? link(routes.block(height - 1), `← block ${height - 1}`) : null,
    height < headHeight ? link(routes.block(height + 1), `block ${height + 1} →`) : null);
}

function headerTable(header, context) {
  return fieldTable([
    ["hash", mono(header.hash)],
    ["height", formatCount(header.height)],
    ["view", String(header.view)],
    ["proposed at", `${formatTime(header.timestamp_ms)} (proposer's clock)`],
    ["proposer", accountLink(header.proposer, context.names, true)],
    ["parent", header.height > 1 ? element("span", {}, blockLink(header.height - 1), " ", mono(header.parent_hash))
      : mono(header.parent_hash)],
    ["transactions", formatCount(header.tx_count)],
    ["transactions root", mono(header.tx_root)],
    ["receipts root", mono(header.receipts_root)],
    ["state root (after this block)", mono(header.state_root)],
    ["chain id", header.chain_id],
  ]);
}

function certificateSection(header, certificate, context) {
  if (!certificate) {
    const missing = element("p", { className: "muted" }, "This node holds no certificate for the block.");
    return section("Commit certificate", missing);
  }
  const validatorCount = context.validators.length;
  const quorum = Math.floor(validatorCount * 2 / 3) + 1;
  const matches = certificate.block_hash === header.hash && certificate.height === header.height;
  const summary = element("p", {},
    `${certificate.signatures.length} of ${validatorCount} validators signed `
      + `(height ${certificate.height}, view ${certificate.view}; a quorum is ${quorum}) `,
    matches ? badge("covers this block", "good") : badge("names another block", "bad"));
  const rows = certificate.signatures.map((signature) => {
    const validator = context.validators[signature.validator_index];
    return [
      String(signature.validator_index),
      validator ? accountLink(validator.address, context.names) : "unknown",
      element("span", { className: "mono wrap" }, signature.signature),
    ];
  });
  const encoded = element("details", {},
    element("summary", {}, "Encoded certificate (verify offline with the genesis)"),
    element("p", { className: "mono wrap" }, certificate.encoded));
  const note = element("p", { className: "muted" }, "Validator names are from the current validator set.");
  const table = dataTable(["Index", "Validator", "Signature"], rows, "data signatures");
  const panel = section("Commit certificate", summary, table, note, encoded);
  panel.id = "certificate";
  return panel;
}

async function transactionList(hashes, context) {
  if (hashes.length === 0) return element("p", { className: "muted" }, "No transactions.");
  const shown = hashes.slice(0, TRANSACTIONS_SHOWN_MAX);
  const answers = await batch(shown.map((hash) => ["tx_get", [hash]]));
  const rows = shown.map((hash, index) => {
    const record = answers[index].result;
    if (!record || record.status !== "committed") return [String(index), txLink(hash), "–", "–", "–"];
    return [String(index), txLink(hash), describeTransaction(record.transaction, context),
      accountLink(record.transaction.sender, context.names), outcomeBadge(record.receipt)];
  });
  const table = dataTable(["#", "Hash", "What", "Sender", "Outcome"], rows);
  const shownText = `Showing the first ${shown.length} of ${formatCount(hashes.length)} transactions.`;
  const more = hashes.length > shown.length ? element("p", { className: "muted" }, shownText) : null;
  return element("div", {}, table, more);
}
