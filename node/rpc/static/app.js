// The dashboard's entry point: hash routes to pages, the search box, and what every page shares.

import { batch } from "./rpc.js";
import { element, errorPanel, notFound, routes } from "./dom.js";
import { renderHome } from "./home.js";
import { renderBlock } from "./block.js";
import { renderTransaction } from "./transaction.js";
import { renderAccount } from "./account.js";
import { renderOrder } from "./order.js";
import { renderSearch } from "./search.js";

// [pattern of location.hash, page renderer, title]; the captured part is the page's argument.
const PAGES = [
  [/^(?:#\/?)?$/, renderHome, () => "Overview"],
  [/^#\/block\/([^/]+)$/, renderBlock, (reference) => `Block ${reference}`],
  [/^#\/tx\/([^/]+)$/, renderTransaction, () => "Transaction"],
  [/^#\/account\/([^/]+)$/, renderAccount, () => "Account"],
  [/^#\/order\/([^/]+)$/, renderOrder, () => "Order"],
  [/^#\/search\/(.*)$/, renderSearch, () => "Search"],
];

/** What every page shares: names of known accounts, asset decimals, the validators, the problem banner. */
const context = {
  names: new Map(),
  decimals: new Map(),
  validators: [],
  chainLoaded: false,
  learnValidators(validators) {
    this.validators = validators;
    for (const validator of validators) this.names.set(validator.address, validator.name);
  },
  reportProblem(message) {
    const banner = document.getElementById("banner");
    banner.textContent = message;
    banner.hidden = false;
  },
  clearProblem() {
    document.getElementById("banner").hidden = true;
  },
};

/** Chain parameters and validators, once: asset decimals, names for the fee account and system contracts. */
async function loadChain() {
  if (context.chainLoaded) return;
  const [params, validators] = await batch([["chain_getParams"], ["chain_getValidators"]]);
  if (params.error) throw params.error;
  if (validators.error) throw validators.error;
  for (const asset of params.result.assets) context.decimals.set(asset.code, asset.decimals);
  context.names.set(params.result.fee_account, "fee account");
  for (const contract of params.result.contracts) context.names.set(contract.address, `${contract.name} contract`);
  context.learnValidators(validators.result);
  document.getElementById("chain-id").textContent = params.result.chain_id;
  context.chainLoaded = true;
}

function matchPage(hash) {
  for (const [pattern, render, title] of PAGES) {
    const match = pattern.exec(hash);
    if (!match) continue;
    try {
      const argument = match[1] === undefined ? undefined : decodeURIComponent(match[1]);
      return { render, argument, title: title(argument) };
    } catch {
      return null;  // a malformed %-escape
    }
  }
  return null;
}

/** Render the page the location names into a fresh view (the previous view, detached, stops refreshing). */
async function show() {
  const view = element("div", { className: "view" }, element("p", { className: "muted" }, "Loading…"));
  document.getElementById("page").replaceChildren(view);
  const page = matchPage(location.hash);
  const onSearchPage = page && page.render === renderSearch;
  document.getElementById("search-input").value = onSearchPage ? page.argument : "";
  try {
    await loadChain();
    context.clearProblem();
  } catch (error) {
    context.reportProblem(`Cannot read the chain's parameters: ${error.message}`);
  }
  if (!page) {
    document.title = "Not found · Paychain";
    view.replaceChildren(notFound("This dashboard has no such page.", `Unknown address ${location.hash}`));
    return;
  }
  document.title = `${page.title} · Paychain`;
  try {
    await page.render(view, context, page.argument);
  } catch (error) {
    if (view.isConnected) view.replaceChildren(errorPanel(error.message));
  }
}

function onSearch(event) {
  event.preventDefault();
  const query = document.getElementById("search-input").value.trim();
  if (!query) return;
  const target = routes.search(query);
  if (location.hash === target) show();  // the same search again: no hashchange event
  else location.hash = target;
}

document.getElementById("search").addEventListener("submit", onSearch);
window.addEventListener("hashchange", show);
show();
