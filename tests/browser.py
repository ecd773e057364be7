"""Headless Debian chromium for the browser tests, driven by Playwright (`executable_path`).

`open_browser()` yields a `Browser`; `watch_console(page)` collects console errors and page
errors so a test can assert a page loaded cleanly; `save_screenshot(page, name)` keeps a
screenshot under `artifacts/screenshots/` (a test artifact, gitignored).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    path = os.environ.get("PAYCHAIN_CHROMIUM") or shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run ./scripts/setup test")
    return path


@contextlib.contextmanager
def open_browser() -> Iterator:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def watch_console(page) -> list[str]:
    """A list that fills with every console error and uncaught page error of `page`."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return problems


def save_screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
