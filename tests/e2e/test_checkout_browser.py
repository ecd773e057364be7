"""A shopper and a merchant in a real browser (Debian's chromium, headless, driven by Playwright) against a
4-validator local network with the gateway and the demo merchant's webhook receiver (shared with the gateway
tests, see tests/e2e/conftest.py).

The shopper opens the checkout link, loads the dev wallet's keystore file, first types a wrong
password (nothing is charged), then the right one: the page decrypts the key and signs in the
browser, submits, and follows the order until it is paid, while the merchant's webhook arrives.
Also: a recharge from the recharge page, an expired checkout, and the merchant's analytics page.
Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any, Iterator

import pytest

from node.localnet import DEV_PASSWORD
from tests.browser import open_browser, save_screenshot, watch_console
from tests.processes import LocalNetwork

pytestmark = [pytest.mark.slow, pytest.mark.browser]

FINAL_TIMEOUT_MS = 30_000
API_ERROR_LOG = "Failed to load resource"
"""Chromium logs every 4xx answer of fetch() as a console error; flows that expect one filter it out."""


def ok(network: LocalNetwork, *args: str) -> dict[str, Any]:
    result = network.wallet(*args, "--json")
    assert result.code == 0, f"paywallet {' '.join(args)} -> {result.code}: {result.stdout} {result.stderr}"
    return result.json()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with open_browser() as chromium:
        yield chromium


def webhook_events(shop: dict[str, Any]) -> list[dict[str, Any]]:
    with urllib.request.urlopen(shop["receiver_url"] + "/events", timeout=10) as response:
        return json.loads(response.read())


def test_checkout_wrong_password_then_pay_until_final_with_the_merchants_webhook(shop, browser) -> None:
    payment = shop["merchant"].create({"product_id": "tea", "quantity": 2}).body
    page = browser.new_page()
    problems = watch_console(page)
    page.goto(payment["checkout_url"])
    page.wait_for_selector("#status[data-state=awaiting_payment]")
    assert page.inner_text("#merchant-name") == "Demo Tea Shop"
    assert "25.00 CNY" in page.inner_text("#options")
    save_screenshot(page, "checkout-open")
    page.set_input_files("#keystore-file", str(shop["home"] / "wallet" / "alice.json"))
    page.fill("#password", "not the password")
    page.click("#pay")
    page.wait_for_selector("#message:has-text('Wrong payment password')")
    save_screenshot(page, "checkout-wrong-password")
    assert shop["merchant"].payment(payment["id"])["state"] == "awaiting_payment"  # nothing was sent

    page.fill("#password", DEV_PASSWORD)
    started = time.monotonic()
    page.click("#pay")
    page.wait_for_selector("#status[data-state=paid]", timeout=FINAL_TIMEOUT_MS)
    order_id = page.inner_text("#order-id")
    assert order_id.startswith("0x") and len(order_id) == 66
    save_screenshot(page, "checkout-paid")
    explorer = page.get_attribute("#explorer-link", "href")
    assert explorer.endswith(f"/#/order/{order_id}")
    on_chain = shop["network"].rpc.call("order_get", order_id)
    assert on_chain["state"] == "created" and on_chain["total"] == 2_500 and on_chain["quantity"] == 2
    deadline = time.monotonic() + 20
    while not any(e["type"] == "payment.paid" and e["data"]["id"] == payment["id"] for e in webhook_events(shop)):
        assert time.monotonic() < deadline, "the merchant's webhook did not arrive"
        time.sleep(0.1)
    print(f"pay click to paid webhook: {time.monotonic() - started:.2f} s")
    assert not problems, problems  # the wrong password never reached the server: no error at all
    page.close()


def test_expired_checkout_says_so_and_charges_nothing(shop, browser) -> None:
    payment = shop["merchant"].create({"product_id": "tea", "expires_in_s": 5}).body
    shop["merchant"].wait_state(payment["id"], ("expired",), timeout_s=20)
    page = browser.new_page()
    problems = watch_console(page)
    page.goto(payment["checkout_url"])
    page.wait_for_selector("#status[data-state=expired]")
    assert "expired" in page.inner_text("#message") and "nothing was charged" in page.inner_text("#message")
    save_screenshot(page, "checkout-expired")
    assert [p for p in problems if API_ERROR_LOG not in p] == []
    page.close()


def test_recharge_page_posts_the_top_up(shop, browser) -> None:
    before = ok(shop["network"], "balance", "bob")["balances"]["USD"]
    page = browser.new_page()
    problems = watch_console(page)
    page.goto(shop["url"] + "/recharge")
    page.wait_for_selector("#recharge:not([disabled])")
    page.select_option("#region", "local")
    page.select_option("#asset", "USD")
    page.fill("#amount", "30.00")
    page.set_input_files("#keystore-file", str(shop["home"] / "wallet" / "bob.json"))
    page.fill("#password", DEV_PASSWORD)
    page.click("#recharge")
    page.wait_for_selector("#status[data-state=posted]", timeout=FINAL_TIMEOUT_MS)
    save_screenshot(page, "recharge-posted")
    after = ok(shop["network"], "balance", "bob")["balances"]["USD"]
    assert after == before + 3_000 - 1  # the request's fee is one minor unit
    assert "USD" in page.inner_text("#balance")
    assert not problems, problems
    page.close()


def test_merchant_analytics_page_shows_sales_and_exports_csv(shop, browser) -> None:
    page = browser.new_page()
    problems = watch_console(page)
    page.goto(shop["url"] + "/merchant")
    page.fill("#api-key", "sk_wrong_key")
    page.click("#sign-in")
    assert "not valid" in page.content()
    page.goto(shop["url"] + "/merchant")
    page.fill("#api-key", shop["api_key"])
    page.click("#sign-in")
    page.wait_for_selector("#sales-chart svg", state="attached")
    assert int(page.inner_text("#paid")) >= 1
    bars = page.eval_on_selector_all("#sales-chart rect", "bars => bars.map(bar => Number(bar.getAttribute('height')))")
    assert len(bars) == 30 and bars[-1] > 0  # 30 days, today's sales drawn
    assert "tea" in page.inner_text("#top-products")
    assert "CNY" in page.inner_text("#volume")
    save_screenshot(page, "merchant-analytics")
    with page.expect_download() as download:
        page.click("#csv")
    assert open(download.value.path()).readline().startswith("day,created,paid")
    page.click("#sign-out")
    page.wait_for_selector("#api-key")
    assert [p for p in problems if API_ERROR_LOG not in p] == []
    page.close()
