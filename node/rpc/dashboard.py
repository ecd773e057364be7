"""The status dashboard and block explorer every node serves at `/`.

Owns the dashboard's HTTP routes (GET / and GET /static/{name}, the files of `node/rpc/static/`), the
security headers on their responses, and `BlockStats`: a bounded ring of per-block figures this node
records as it commits (height, hash, proposer, transaction count, commit time, finality), read over
JSON-RPC by `chain_getStats`. Those points also give the overview its recent blocks, so a page that
refreshes every few seconds does not make the node read and hash whole blocks. The pages themselves are
static HTML, CSS and JavaScript that call this node's JSON-RPC at POST /rpc: nothing here renders chain
data into HTML.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from node import limits
from node.app import CommittedBlock, Ledger
from node.rpc import views
from node.rpc.jsonrpc import INVALID_PARAMS, Dispatcher, RpcError

STATIC_FOLDER = Path(__file__).resolve().parent / "static"
INDEX_FILE = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
"""The only kinds of file served from the static folder; anything else there is ignored."""

SECURITY_HEADERS = {
    # Everything comes from this node: no inline script or style, no other origin, no framing.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change when the node is upgraded: revalidate rather than run an old script.
    "Cache-Control": "no-cache",
}

THROUGHPUT_WINDOW_MS = 60_000
"""`chain_getStats` reports transactions per second over this much of the recent past."""


@dataclass(frozen=True, slots=True)
class BlockPoint:
    """What this node saw when it committed one block."""

    height: int
    block_hash: bytes
    proposer: bytes
    timestamp_ms: int
    """The proposer's clock (Unix ms) in the block header."""
    tx_count: int
    signatures: int
    """Signatures in the block's commit certificate."""
    committed_ms: int
    """This node's wall clock (Unix ms) when the block was committed here."""

    @property
    def finality_ms(self) -> int:
        """Proposal to final, as seen from this node. Never below 0: a proposer's clock may run ahead of ours
        (by up to `limits.timestamp_skew_ms_max`). A block this node fetched by block sync counts from its
        proposal, so catching up shows as long finality."""
        return max(0, self.committed_ms - self.timestamp_ms)


class BlockStats:
    """The last `limits.dashboard_stats_points_max` commits on this node, oldest first (in memory only: empty
    after a restart)."""

    def __init__(self, ledger: Ledger, clock_ms: Callable[[], int] | None = None) -> None:
        assert limits.dashboard_stats_points_max > 0
        self.points: deque[BlockPoint] = deque(maxlen=limits.dashboard_stats_points_max)
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        ledger.listeners.append(self.on_commit)

    def on_commit(self, committed: CommittedBlock) -> None:
        header = committed.block.header
        self.points.append(BlockPoint(header.height, committed.block_hash, header.proposer, header.timestamp_ms,
                                      len(committed.envelopes), len(committed.certificate.signatures),
                                      self.clock_ms()))

    def latest(self, count: int) -> list[BlockPoint]:
        """The newest `count` points, oldest first."""
        return list(self.points)[-count:]

    def txs_in_window(self, now_ms: int) -> int:
        """Transactions in blocks committed during the last THROUGHPUT_WINDOW_MS."""
        since_ms = now_ms - THROUGHPUT_WINDOW_MS
        return sum(point.tx_count for point in self.points if point.committed_ms > since_ms)

    def finality_ms_percentile(self, percent: int) -> int | None:
        """Nearest-rank percentile of finality over every point held (None when there are none)."""
        assert 0 < percent <= 100
        if not self.points:
            return None
        ordered = sorted(point.finality_ms for point in self.points)
        rank = -(-len(ordered) * percent // 100)  # ceiling
        return ordered[rank - 1]


class Dashboard:
    """The dashboard's routes and `chain_getStats`, over one ledger."""

    def __init__(self, ledger: Ledger, clock_ms: Callable[[], int] | None = None) -> None:
        self.stats = BlockStats(ledger, clock_ms)
        self.files = load_static_files(STATIC_FOLDER)
        assert INDEX_FILE in self.files, f"{INDEX_FILE} is missing from {STATIC_FOLDER}"

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register("chain_getStats", self.chain_get_stats, ("limit",), required=0)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.handle_index)
        app.router.add_get("/static/{name}", self.handle_static)

    async def chain_get_stats(self, context: Any, limit: Any = None) -> dict[str, Any]:
        """The newest `limit` points (all held by default), oldest first; the derived figures cover every
        point held, whatever the limit."""
        points_max = self.stats.points.maxlen
        if limit is None:
            limit = points_max
        if type(limit) is not int or not 1 <= limit <= points_max:
            raise RpcError(INVALID_PARAMS, f"Invalid params: limit must be 1..{points_max}")
        now_ms = self.stats.clock_ms()
        window_txs = self.stats.txs_in_window(now_ms)
        return {
            "now_ms": now_ms,
            "points_max": points_max,
            "points": [point_json(point) for point in self.stats.latest(limit)],
            "window_ms": THROUGHPUT_WINDOW_MS,
            "window_txs": window_txs,
            "txs_per_s": round(window_txs * 1000 / THROUGHPUT_WINDOW_MS, 2),
            "finality_ms_p50": self.stats.finality_ms_percentile(50),
            "finality_ms_p90": self.stats.finality_ms_percentile(90),
        }

    async def handle_index(self, request: web.Request) -> web.Response:
        return self._file_response(INDEX_FILE)

    async def handle_static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.files:
            raise web.HTTPNotFound(text="no such file", headers=SECURITY_HEADERS)
        return self._file_response(name)

    def _file_response(self, name: str) -> web.Response:
        body = self.files[name]
        content_type = CONTENT_TYPES[Path(name).suffix]
        return web.Response(body=body, headers={**SECURITY_HEADERS, "Content-Type": content_type})


def point_json(point: BlockPoint) -> dict[str, Any]:
    return {
        "height": point.height,
        "hash": views.hex0x(point.block_hash),
        "proposer": views.address_text(point.proposer),
        "timestamp_ms": point.timestamp_ms,
        "tx_count": point.tx_count,
        "signatures": point.signatures,
        "committed_ms": point.committed_ms,
        "finality_ms": point.finality_ms,
    }


def load_static_files(folder: Path) -> dict[str, bytes]:
    """Every servable file of `folder` by name, read once (they are small, and a fixed set means a request
    can never name a path outside the folder)."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())
            if path.is_file() and path.suffix in CONTENT_TYPES}
