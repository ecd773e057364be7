// Time charts drawn as inline SVG from chain_getStats points (this node's recent commits).

import { element, formatDuration, svgElement } from "./dom.js";

const WIDTH = 640;
const HEIGHT = 220;
const MARGIN = { left: 64, right: 16, top: 14, bottom: 30 };
const PLOT_WIDTH = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_HEIGHT = HEIGHT - MARGIN.top - MARGIN.bottom;
const BUCKETS_MAX = 60;
const MINIMUM_SPAN_MS = 60000;
const DOTS_MAX = 150;

/** The time span the charts cover: from the oldest point held (at least a minute) up to the node's now. */
export function chartSpan(stats) {
  const oldest = stats.points.length ? stats.points[0].committed_ms : stats.now_ms;
  return { fromMs: Math.min(oldest, stats.now_ms - MINIMUM_SPAN_MS), toMs: stats.now_ms };
}

/** Transactions per second in equal time buckets ending at `span.toMs` (at most BUCKETS_MAX, each ≥ 1 s). */
function throughputBuckets(points, span) {
  const bucketMs = Math.max(1000, Math.ceil((span.toMs - span.fromMs) / BUCKETS_MAX / 1000) * 1000);
  const count = Math.ceil((span.toMs - span.fromMs) / bucketMs);
  const txs = new Array(count).fill(0);
  for (const point of points) {
    const index = count - 1 - Math.floor((span.toMs - point.committed_ms) / bucketMs);
    if (index >= 0 && index < count) txs[index] += point.tx_count;
  }
  return txs.map((total, index) => ({
    fromMs: span.toMs - (count - index) * bucketMs,
    toMs: span.toMs - (count - index - 1) * bucketMs,
    value: total / (bucketMs / 1000),
  }));
}

/** The smallest of 1, 2, 5 × 10^k at or above `value` (a readable top for an axis). */
function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

function scales(span, valueMax) {
  const top = niceCeiling(valueMax);
  return {
    top,
    x: (milliseconds) => MARGIN.left + ((milliseconds - span.fromMs) / (span.toMs - span.fromMs)) * PLOT_WIDTH,
    y: (value) => MARGIN.top + PLOT_HEIGHT - (value / top) * PLOT_HEIGHT,
  };
}

function axes(span, scale, formatValue) {
  const parts = [];
  for (const fraction of [0, 0.5, 1]) {
    const y = scale.y(scale.top * fraction);
    parts.push(svgElement("line", { class: "grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y }));
    parts.push(svgElement("text", { class: "axis-label", x: MARGIN.left - 6, y: y + 4, "text-anchor": "end" },
      formatValue(scale.top * fraction)));
  }
  const bottom = HEIGHT - MARGIN.bottom + 18;
  parts.push(svgElement("text", { class: "axis-label", x: MARGIN.left, y: bottom, "text-anchor": "start" },
    `${formatDuration(span.toMs - span.fromMs)} ago`));
  parts.push(svgElement("text", { class: "axis-label", x: WIDTH - MARGIN.right, y: bottom, "text-anchor": "end" },
    "now"));
  return parts;
}

function chartFrame(title, description, parts) {
  const attributes = { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "chart", "aria-label": description };
  const svg = svgElement("svg", attributes, svgElement("title", {}, description), ...parts);
  return element("figure", { className: "chart-figure" }, element("figcaption", {}, title), svg);
}

function emptyChart(title, span) {
  const scale = scales(span, 1);
  const middle = { x: MARGIN.left + PLOT_WIDTH / 2, y: MARGIN.top + PLOT_HEIGHT / 2 };
  const message = svgElement("text", { class: "chart-empty", ...middle, "text-anchor": "middle" },
    "No blocks committed here yet");
  return chartFrame(title, `${title}: no data yet`, [...axes(span, scale, () => ""), message]);
}

/** Bars of transactions per second over time. */
export function throughputChart(points, span) {
  const title = "Throughput (transactions per second)";
  if (points.length === 0) return emptyChart(title, span);
  const buckets = throughputBuckets(points, span);
  const scale = scales(span, Math.max(...buckets.map((bucket) => bucket.value)));
  const bars = buckets.filter((bucket) => bucket.value > 0).map((bucket) => {
    const x = scale.x(bucket.fromMs);
    const width = Math.max(1, scale.x(bucket.toMs) - x - 1);
    const y = scale.y(bucket.value);
    return svgElement("rect", { class: "bar", x, y, width, height: MARGIN.top + PLOT_HEIGHT - y },
      svgElement("title", {}, `${bucket.value.toFixed(2)} tx/s`));
  });
  const peak = Math.max(...buckets.map((bucket) => bucket.value));
  return chartFrame(title, `${title}: peak ${peak.toFixed(2)} tx/s`, [...axes(span, scale, formatRate), ...bars]);
}

/** A line of each block's finality (proposal to commit on this node) over time. */
export function finalityChart(points, span) {
  const title = "Finality per block (proposal → commit here)";
  if (points.length === 0) return emptyChart(title, span);
  const scale = scales(span, Math.max(...points.map((point) => point.finality_ms)));
  const coordinates = points.map((point) => [scale.x(point.committed_ms), scale.y(point.finality_ms)]);
  const path = coordinates.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  const line = svgElement("polyline", { class: "line", points: path });
  const dots = points.length > DOTS_MAX ? [] : points.map((point, index) =>
    svgElement("circle", { class: "dot", cx: coordinates[index][0], cy: coordinates[index][1], r: 2.5 },
      svgElement("title", {}, `block ${point.height}: ${formatDuration(point.finality_ms)}`)));
  const description = `${title} for ${points.length} blocks`;
  return chartFrame(title, description, [...axes(span, scale, formatDuration), line, ...dots]);
}

function formatRate(value) {
  return value >= 10 || value === 0 ? String(Math.round(value)) : value.toFixed(1);
}
