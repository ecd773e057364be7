"""The dashboard in a real browser, on a 4-validator local network.

A few transfers and an order are committed through `paywallet`; then headless chromium opens node 0's
dashboard, checks the overview (height, validators, recent blocks, charts), clicks through to a block
(with its commit certificate), a transaction, an order and an account, and uses the search box. Every
page must load without a console error; screenshots go to artifacts/screenshots/dashboard-*.png.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.browser import open_browser, save_screenshot, watch_console
from tests.e2e.test_payment_flows import sent
from tests.processes import LocalNetwork, localnet_down, validator_network_up

pytestmark = [pytest.mark.slow, pytest.mark.browser]

WAIT_MS = 10_000
VALIDATORS = 4


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Iterator[LocalNetwork]:
    nodes = validator_network_up(tmp_path_factory.mktemp("dashboard") / "net", VALIDATORS)
    try:
        yield nodes[0]
    finally:
        localnet_down(nodes[0].home)


@pytest.fixture(scope="module")
def activity(network: LocalNetwork) -> dict[str, Any]:
    """Two transfers, a product in the merchant's catalog, and an order: what the pages will show."""
    transfers = [sent(network, "transfer", "--from", "alice", "--to", "bob", "--amount", amount, "--asset", "CNY")
                 for amount in ("12.50", "3.25")]
    sent(network, "catalog", "add", "--from", "merchant", "--product", "tea", "--name", "Green tea", "--price", "12.50",
         "--currency", "CNY", "--stock", "100", "--limit", "5")
    order = sent(network, "pay", "--from", "alice", "--merchant", "merchant", "--product", "tea", "--quantity", "2")
    return {"transfers": transfers, "order": order, "height": network.rpc.call("node_status")["height"]}


def dashboard_url(network: LocalNetwork, route: str = "") -> str:
    return network.rpc_url.removesuffix("/rpc") + "/" + route


def search(page, text: str) -> None:
    page.fill("#search-input", text)
    page.click("#search button")


def test_dashboard_pages_and_search(network: LocalNetwork, activity: dict[str, Any]) -> None:
    order, transfer = activity["order"], activity["transfers"][0]
    with open_browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems = watch_console(page)

        page.goto(dashboard_url(network))
        page.wait_for_selector("#recent-blocks tbody tr", timeout=WAIT_MS)
        # the validators' links come up on their own schedule: wait for a refresh that shows all of them
        page.wait_for_function(f"document.querySelectorAll('#validators .badge-good').length === {VALIDATORS}",
                               timeout=WAIT_MS)
        assert page.text_content("[data-card=chain] .card-value") == "paychain-local"
        assert int(page.text_content("[data-card=height] .card-value")) >= activity["height"]
        validator_rows = page.locator("#validators tbody tr")
        assert validator_rows.count() == VALIDATORS
        assert "this node" in validator_rows.nth(0).text_content()
        assert page.locator("#validators .badge-accent").text_content() == "primary"
        assert page.locator("#recent-blocks tbody tr").count() == activity["height"]
        assert page.locator("#charts svg.chart rect.bar").count() >= 1
        assert page.locator("#charts svg.chart polyline.line").count() == 1
        save_screenshot(page, "dashboard-home")
        assert problems == []

        page.click(f"#recent-blocks a[href='#/block/{order['height']}']")
        page.wait_for_selector("#certificate", timeout=WAIT_MS)
        certificate = page.locator("#certificate")
        assert "covers this block" in certificate.text_content()
        signatures = certificate.locator("tbody tr")
        assert 3 <= signatures.count() <= VALIDATORS  # a quorum of 2f+1 = 3
        assert len(signatures.nth(0).locator("td").nth(2).text_content()) == 2 + 128  # 0x + 64 bytes of hex
        save_screenshot(page, "dashboard-block")
        assert problems == []

        page.click(f"a[href='#/tx/{order['hash']}']")
        page.wait_for_selector("text=order_created", timeout=WAIT_MS)
        assert page.locator(".badge", has_text="committed").count() == 1
        assert page.locator(".badge", has_text="success").count() == 1
        save_screenshot(page, "dashboard-tx")
        assert problems == []

        page.click(f"a[href='#/order/{order['order_id']}']")
        page.wait_for_selector("h1:text-is('Order')", timeout=WAIT_MS)
        assert page.locator(".badge", has_text="created").count() == 1
        assert "25.00 CNY" in page.text_content("main")  # 2 x 12.50, in CNY's two decimals
        save_screenshot(page, "dashboard-order")
        assert problems == []

        buyer = transfer["transaction"]["sender"]
        page.click(f"main a[href='#/account/{buyer}']")
        page.wait_for_selector("text=Balances", timeout=WAIT_MS)
        main = page.text_content("main")
        assert buyer in main and "CNY" in main
        assert page.locator("section:has(h2:text-is('History')) tbody tr").count() == 3  # 2 transfers, 1 order
        assert page.locator("section:has(h2:text-is('Orders')) tbody tr").count() == 1
        save_screenshot(page, "dashboard-account")
        assert problems == []

        search(page, transfer["hash"][2:].upper())  # a tx hash, without 0x, in capitals
        page.wait_for_url(f"**#/tx/{transfer['hash']}", timeout=WAIT_MS)
        page.wait_for_selector("text=Receipt", timeout=WAIT_MS)
        search(page, transfer["block_hash"])
        page.wait_for_url(f"**#/block/{transfer['height']}", timeout=WAIT_MS)
        page.wait_for_selector("#certificate", timeout=WAIT_MS)
        search(page, order["order_id"])
        page.wait_for_url(f"**#/order/{order['order_id']}", timeout=WAIT_MS)
        search(page, str(order["height"]))
        page.wait_for_url(f"**#/block/{order['height']}", timeout=WAIT_MS)
        search(page, buyer)
        page.wait_for_url(f"**#/account/{buyer}", timeout=WAIT_MS)
        search(page, "0x" + "ab" * 32)
        page.wait_for_selector("[data-state=not-found]", timeout=WAIT_MS)
        assert "Nothing on this chain matches" in page.text_content("main")
        save_screenshot(page, "dashboard-search-not-found")
        assert problems == []

        page.goto(dashboard_url(network, f"#/block/{transfer['height']}"))  # a deep link, loaded fresh
        page.wait_for_selector("#certificate", timeout=WAIT_MS)
        assert page.title() == f"Block {transfer['height']} · Paychain"
        assert problems == []
