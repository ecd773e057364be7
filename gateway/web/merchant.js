// The merchant's analytics page: reads /v1/analytics and /v1/payments with the session cookie and
// draws the figures, a sales-per-day chart (inline SVG), volume per asset, top products and the
// latest payments. Every value goes into the page through textContent, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function byId(id) {
  return document.getElementById(id);
}

let decimalsOf = {}; // digits after the point per asset, from the report

function formatAmount(minor, asset) {
  const decimals = decimalsOf[asset] ?? 2;
  return (minor / 10 ** decimals).toFixed(decimals) + " " + asset;
}

function formatAmounts(amounts) {
  const assets = Object.keys(amounts).sort();
  return assets.length ? assets.map((asset) => formatAmount(amounts[asset], asset)).join(", ") : "–";
}

function percent(rate) {
  return (rate * 100).toFixed(1) + " %";
}

async function getJson(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.error ? body.error.message : "HTTP " + response.status);
  }
  return body;
}

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  if (text !== undefined) {
    element.textContent = text;
  }
  return element;
}

// One bar per day: the number of paid orders; the day's label under every few bars.
function drawSalesChart(daily) {
  const width = 1000;
  const height = 220;
  const bottom = 20;
  const top = 14;
  const most = Math.max(1, ...daily.map((day) => day.paid));
  const slot = width / daily.length;
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
                                  "aria-label": "paid orders per day" });
  const labelEvery = Math.ceil(daily.length / 10);
  daily.forEach((day, index) => {
    const barHeight = (height - bottom - top) * (day.paid / most);
    const x = index * slot + slot * 0.15;
    const bar = svgElement("rect", { x, y: height - bottom - barHeight, width: slot * 0.7, height: barHeight,
                                     class: "bar-paid" });
    bar.appendChild(svgElement("title", {}, `${day.day}: ${day.paid} paid, ${formatAmounts(day.volume)}`));
    svg.appendChild(bar);
    if (day.paid > 0) {
      svg.appendChild(svgElement("text", { x: x + slot * 0.35, y: height - bottom - barHeight - 3,
                                           "text-anchor": "middle" }, String(day.paid)));
    }
    if (index % labelEvery === 0) {
      svg.appendChild(svgElement("text", { x: x + slot * 0.35, y: height - 5, "text-anchor": "middle" },
                                 day.day.slice(5)));
    }
  });
  const chart = byId("sales-chart");
  chart.replaceChildren(svg);
}

function fillTable(id, rows) {
  const body = byId(id).querySelector("tbody");
  body.replaceChildren(...rows.map((cells) => {
    const row = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      td.textContent = cell;
      row.appendChild(td);
    }
    return row;
  }));
}

function showReport(report) {
  decimalsOf = report.decimals || {};
  byId("paid").textContent = String(report.totals.paid);
  byId("created").textContent = String(report.totals.created);
  byId("cancel-rate").textContent = percent(report.cancel_rate);
  byId("refund-rate").textContent = percent(report.refund_rate);
  drawSalesChart(report.daily);
  const assets = [...new Set([...Object.keys(report.volume), ...Object.keys(report.refunded_volume)])].sort();
  fillTable("volume", assets.map((asset) => [asset, formatAmount(report.volume[asset] || 0, asset),
                                             formatAmount(report.refunded_volume[asset] || 0, asset)]));
  fillTable("top-products", report.top_products.map((product) => [product.product_id, String(product.quantity),
                                                                   formatAmounts(product.volume)]));
}

function showPayments(page) {
  fillTable("payments", page.items.map((payment) => [
    new Date(payment.created_at * 1000).toLocaleString(), payment.id, `${payment.quantity} × ${payment.chosen ||
    payment.product_id}`, formatAmount(payment.total, payment.currency), payment.state]));
}

async function refresh() {
  const days = byId("days").value;
  byId("csv").setAttribute("href", "/v1/analytics.csv?days=" + encodeURIComponent(days));
  try {
    const [report, page] = await Promise.all([getJson("/v1/analytics?days=" + encodeURIComponent(days)),
                                              getJson("/v1/payments?limit=20")]);
    showReport(report);
    showPayments(page);
    byId("message").textContent = "";
  } catch (error) {
    byId("message").textContent = "Could not load the figures: " + error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  byId("days").addEventListener("change", refresh);
  refresh();
  setInterval(refresh, 10000);
});
