"""The dashboard every node serves at `/`: its files and headers over real HTTP, and `chain_getStats`.

A real RpcServer over a Ledger on LevelDB in a temporary folder; blocks are committed with TestChain
between calls, and the stats clock is set by the test so finality figures are exact.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

import pytest

from node import blocks, limits
from node.rpc.dashboard import STATIC_FOLDER
from node.storage.kv import LevelDbStore
from tests import support
from tests.support import address, hex0x, make_chain, run_async, serve_rpc, transfer

INVALID_PARAMS = -32602
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'none'")


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[support.TestChain]:
    store = LevelDbStore(tmp_path / "db")
    try:
        yield make_chain(kv=store)
    finally:
        store.close()


def assert_security_headers(headers) -> None:
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


class PageParts(HTMLParser):
    """What a page pulls in: script and stylesheet URLs, and anything inline the policy would block."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        values = dict(attributes)
        if "style" in values or any(name.startswith("on") for name in values):
            self.inline.append(f"<{tag}> with an inline style or handler")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            if values.get("src"):
                self.urls.append(values["src"])
            else:
                self.inline.append("<script> without src")
        if tag == "link" and values.get("href"):
            self.urls.append(values["href"])


def module_imports(script: str) -> list[str]:
    return re.findall(r'^import [^;]*? from "\./([\w.]+)";', script, flags=re.MULTILINE | re.DOTALL)


# --- pages and files ----------------------------------------------------------------------

@run_async
async def test_root_serves_the_dashboard_with_security_headers(chain: support.TestChain) -> None:
    async with serve_rpc(chain.ledger) as rpc:
        async with rpc.session.get(rpc.url("/")) as response:
            html = await response.text()
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert_security_headers(response.headers)
        status, answer = await rpc.post('{"jsonrpc": "2.0", "method": "node_status", "id": 1}')
    assert status == 200 and answer["result"]["height"] == 0  # the root still takes JSON-RPC posts
    parts = PageParts()
    parts.feed(html)
    assert parts.inline == [], "the policy allows no inline script or style"
    assert "/static/app.js" in parts.urls and "/static/dashboard.css" in parts.urls


@run_async
async def test_every_asset_the_page_loads_is_served_with_its_content_type(chain: support.TestChain) -> None:
    expected_types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                      ".svg": "image/svg+xml"}
    async with serve_rpc(chain.ledger) as rpc:
        async with rpc.session.get(rpc.url("/")) as response:
            parts = PageParts()
            parts.feed(await response.text())
        pending, fetched = list(parts.urls), set()
        while pending:  # the page's links, then every module the scripts import
            url = pending.pop()
            if url in fetched:
                continue
            fetched.add(url)
            async with rpc.session.get(rpc.url(url)) as response:
                body = await response.text()
                assert response.status == 200, url
                assert response.headers["Content-Type"] == expected_types[Path(url).suffix], url
                assert_security_headers(response.headers)
            pending += [f"/static/{name}" for name in module_imports(body)] if url.endswith(".js") else []
    shipped = {f"/static/{path.name}" for path in STATIC_FOLDER.iterdir() if path.suffix != ".html"}
    assert fetched == shipped, "every shipped file is used, and every used file is shipped"


@run_async
async def test_unknown_static_paths_are_not_found(chain: support.TestChain) -> None:
    async with serve_rpc(chain.ledger) as rpc:
        for path in ("/static/missing.js", "/static/..%2Fserver.py", "/static/../dashboard.py", "/static/"):
            async with rpc.session.get(rpc.url(path)) as response:
                assert response.status == 404, path


# --- chain_getStats -----------------------------------------------------------------------

def commit_transfers(chain: support.TestChain, count: int, first_nonce: int) -> int:
    """Commit one block holding `count` transfers from alice; its height."""
    chain.submit(*(transfer(nonce=first_nonce + i) for i in range(count)))
    return chain.commit_pending().block.header.height


def point_of_block(chain: support.TestChain, height: int) -> dict[str, Any]:
    """What chain_getStats must say about a committed block, apart from this node's commit time."""
    header = chain.ledger.store.get_block(height).header
    return {"height": height, "hash": hex0x(blocks.header_hash(header)), "proposer": address("validator-0"),
            "timestamp_ms": header.timestamp_ms, "tx_count": header.tx_count,
            "signatures": len(chain.ledger.store.get_certificate(height).signatures)}


@run_async
async def test_stats_record_each_commit_with_its_transactions_and_finality(chain: support.TestChain) -> None:
    async with serve_rpc(chain.ledger) as rpc:
        empty = await rpc.result("chain_getStats")
        commit_delays_ms = [250, 40]
        rpc.server.dashboard.stats.clock_ms = lambda: chain.now_ms + commit_delays_ms[0]
        first = commit_transfers(chain, 1, 0)
        rpc.server.dashboard.stats.clock_ms = lambda: chain.now_ms + commit_delays_ms[1]
        second = commit_transfers(chain, 3, 1)
        rpc.server.dashboard.stats.clock_ms = lambda: chain.now_ms - 1_000  # the proposer's clock runs ahead
        third = commit_transfers(chain, 2, 4)
        rpc.server.dashboard.stats.clock_ms = lambda: chain.now_ms + 30_000  # read half a minute later
        stats = await rpc.result("chain_getStats")
        latest_two = await rpc.result("chain_getStats", {"limit": 2})
    assert empty["points"] == [] and empty["finality_ms_p50"] is None and empty["txs_per_s"] == 0
    assert stats["points_max"] == limits.dashboard_stats_points_max
    assert stats["now_ms"] == chain.now_ms + 30_000
    assert [(p["height"], p["tx_count"], p["finality_ms"]) for p in stats["points"]] == [
        (first, 1, 250), (second, 3, 40), (third, 2, 0)]
    for point in stats["points"]:  # the overview's recent blocks come from these points
        assert {key: point[key] for key in point if key not in ("committed_ms", "finality_ms")} == \
            point_of_block(chain, point["height"])
    assert stats["points"][-1]["committed_ms"] == chain.now_ms - 1_000
    assert stats["window_ms"] == 60_000 and stats["window_txs"] == 6
    assert stats["txs_per_s"] == 0.1
    assert stats["finality_ms_p50"] == 40 and stats["finality_ms_p90"] == 250
    assert latest_two["points"] == stats["points"][1:]


@run_async
async def test_stats_count_only_the_last_minute_for_throughput(chain: support.TestChain) -> None:
    async with serve_rpc(chain.ledger) as rpc:
        rpc.server.dashboard.stats.clock_ms = lambda: chain.now_ms
        commit_transfers(chain, 2, 0)
        older_ms = chain.now_ms
        commit_transfers(chain, 1, 2)
        rpc.server.dashboard.stats.clock_ms = lambda: older_ms + 60_000  # the older block's minute is just over
        stats = await rpc.result("chain_getStats")
    assert [p["tx_count"] for p in stats["points"]] == [2, 1]
    assert stats["window_txs"] == 1 and stats["txs_per_s"] == 0.02


@run_async
async def test_stats_keep_only_the_newest_points(chain: support.TestChain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "dashboard_stats_points_max", 3)
    async with serve_rpc(chain.ledger) as rpc:
        heights = [commit_transfers(chain, 1, nonce) for nonce in range(5)]
        stats = await rpc.result("chain_getStats")
        too_many = await rpc.error("chain_getStats", [4])
    assert [p["height"] for p in stats["points"]] == heights[-3:]
    assert stats["points_max"] == 3
    assert too_many["code"] == INVALID_PARAMS and "1..3" in too_many["message"]


@run_async
async def test_invalid_stats_limit_is_invalid_params(chain: support.TestChain) -> None:
    async with serve_rpc(chain.ledger) as rpc:
        for limit in (0, -1, limits.dashboard_stats_points_max + 1, "10", 1.5, True, [5]):
            error = await rpc.error("chain_getStats", [limit])
            assert error["code"] == INVALID_PARAMS, limit
            assert f"limit must be 1..{limits.dashboard_stats_points_max}" in error["message"]
        unknown = await rpc.error("chain_getStats", {"count": 5})
        assert unknown["code"] == INVALID_PARAMS
