// The overview page: this node's view of the chain, the validators, charts of recent commits, recent blocks.

import { batch } from "./rpc.js";
import { chartSpan, finalityChart, throughputChart } from "./charts.js";
import {
  accountLink, badge, blockLink, dataTable, element, formatAge, formatCount, formatDuration, section, shortHash,
  sleep,
} from "./dom.js";

const REFRESH_MS = 2000;
const RECENT_BLOCKS = 12;

/** Fill `view` and keep it fresh until the reader navigates away (the view leaves the document). */
export async function renderHome(view, context) {
  const parts = {
    cards: element("div", { className: "cards", id: "summary" }),
    validators: element("div", { id: "validators" }),
    charts: element("div", { className: "charts", id: "charts" }),
    blocks: element("div", { id: "recent-blocks" }),
  };
  view.replaceChildren(
    element("h1", {}, "Node overview"),
    parts.cards,
    section("Validators", parts.validators),
    section("Recent commits on this node", parts.charts),
    section("Recent blocks", parts.blocks),
  );
  while (view.isConnected) {
    if (!document.hidden) {  // a tab in the background costs the node nothing
      try {
        await refresh(parts, context);
        context.clearProblem();
      } catch (error) {
        context.reportProblem(`Cannot reach the node: ${error.message}`);
      }
    }
    await sleep(REFRESH_MS);
  }
}

async function refresh(parts, context) {
  const [status, stats, validators] = await batch([["node_status"], ["chain_getStats"], ["chain_getValidators"]]);
  for (const answer of [status, stats, validators]) if (answer.error) throw answer.error;
  context.learnValidators(validators.result);
  const blocks = await recentBlocks(status.result.height, stats.result.points);
  parts.cards.replaceChildren(...summaryCards(status.result, stats.result, validators.result, context));
  parts.validators.replaceChildren(validatorTable(validators.result, status.result, stats.result.now_ms));
  const span = chartSpan(stats.result);
  parts.charts.replaceChildren(throughputChart(stats.result.points, span), finalityChart(stats.result.points, span));
  parts.blocks.replaceChildren(blockTable(blocks, stats.result.now_ms, context));
}

// Committed blocks never change: summaries of the recent ones are kept between refreshes, by height.
const blockSummaries = new Map();

function summaryOfBlock({ header, certificate }) {
  return {
    height: header.height, hash: header.hash, tx_count: header.tx_count, proposer: header.proposer,
    timestamp_ms: header.timestamp_ms, signatures: certificate ? certificate.signatures.length : 0,
  };
}

/** Summaries of the newest blocks, newest first: from chain_getStats points (recorded as this node committed
 * them), and by chain_getBlock only for those it committed before it started. */
async function recentBlocks(height, points) {
  const heights = [];
  for (let h = height; h > 0 && heights.length < RECENT_BLOCKS; h--) heights.push(h);
  for (const point of points) if (heights.includes(point.height)) blockSummaries.set(point.height, point);
  const missing = heights.filter((h) => !blockSummaries.has(h));
  const answers = await batch(missing.map((h) => ["chain_getBlock", [h]]));
  for (const answer of answers) {
    if (answer.result) blockSummaries.set(answer.result.header.height, summaryOfBlock(answer.result));
  }
  for (const known of blockSummaries.keys()) if (!heights.includes(known)) blockSummaries.delete(known);
  return heights.filter((h) => blockSummaries.has(h)).map((h) => blockSummaries.get(h));
}

function card(label, value, detail, id) {
  return element("div", { className: "card", dataset: { card: id } },
    element("div", { className: "card-label" }, label),
    element("div", { className: "card-value" }, value),
    detail ? element("div", { className: "card-detail" }, detail) : null);
}

function summaryCards(status, stats, validators, context) {
  const connected = status.peers.filter((peer) => peer.connected).length;
  const primaryName = context.names.get(status.primary) || shortHash(status.primary || "–");
  return [
    card("Chain", status.chain_id, `node ${status.node_version}`, "chain"),
    card("Height", formatCount(status.height),
      status.height ? formatAge(status.last_block_time_ms, stats.now_ms) : "genesis", "height"),
    card("View", String(status.view), status.view_changing ? "view change in progress" : status.mode, "view"),
    card("Primary", primaryName, "proposes the next block", "primary"),
    card("Peers", `${connected} / ${status.peers.length}`,
      status.syncing ? "catching up (block sync)" : "connected", "peers"),
    card("Mempool", formatCount(status.mempool.txs), `${formatCount(status.mempool.bytes)} bytes`, "mempool"),
    card("Throughput", `${stats.txs_per_s} tx/s`, `${formatCount(stats.window_txs)} tx in the last minute`,
      "throughput"),
    card("Finality p50", formatDuration(stats.finality_ms_p50),
      `p90 ${formatDuration(stats.finality_ms_p90)} · last ${stats.points.length} blocks`, "finality"),
  ];
}

function validatorHealth(validator, status, nowMs) {
  if (status.validator === validator.address) return [badge("this node", "good"), ""];
  const peer = status.peers.find((candidate) => candidate.public_key === validator.public_key);
  if (!peer) return [badge("no link", "neutral"), ""];
  const link = peer.connected ? badge("connected", "good") : badge("disconnected", "bad");
  const seen = peer.last_seen_ms ? formatAge(peer.last_seen_ms, nowMs) : "never";
  // node_peers entries carry no height yet; show the one a peer reported (Status) once they do.
  const height = typeof peer.height === "number" ? ` · at height ${formatCount(peer.height)}` : "";
  return [link, seen + height];
}

function validatorTable(validators, status, nowMs) {
  const rows = validators.map((validator) => {
    const [health, seen] = validatorHealth(validator, status, nowMs);
    const name = element("span", {}, validator.name, " ",
      validator.address === status.primary ? badge("primary", "accent") : null);
    return [String(validator.index), name, validator.role || "–", accountLink(validator.address), health, seen];
  });
  return dataTable(["#", "Validator", "Role", "Address", "Link from this node", "Last message"], rows);
}

function blockTable(blocks, nowMs, context) {
  if (blocks.length === 0) return element("p", { className: "muted" }, "No blocks yet: the chain is at genesis.");
  const rows = blocks.map((block) => [
    blockLink(block.height),
    element("a", { href: `#/block/${block.height}`, className: "mono", title: block.hash }, shortHash(block.hash)),
    formatCount(block.tx_count),
    accountLink(block.proposer, context.names),
    block.signatures ? `${block.signatures} signatures` : "–",
    formatAge(block.timestamp_ms, nowMs),
  ]);
  return dataTable(["Height", "Hash", "Txs", "Proposer", "Certificate", "Proposed"], rows);
}
