#!/usr/bin/env python3
"""Where a node's memory goes after hostile requests (issue 12 #13): one RpcServer in this process takes
--rounds rounds of the largest hostile requests (a 13 MB batch of 100 tx_sendBatch calls of bad signatures,
and one tx_sendBatch of 2,000), with no budget in the way; then it prints the RSS before, after, and after
glibc's malloc_trim, and what Python itself still holds (tracemalloc is not used: it would change the heap).

Run it with --rounds 20 and --rounds 100: if the growth is the same, the memory is the allocator keeping its
high-water mark (freed memory it does not give back), not something that accumulates.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.rpc.budget import ClientBudgets  # noqa: E402
from tests.support import hex0x, make_chain, serve_rpc, transfer  # noqa: E402


def rss_mb() -> int:
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) // 1024


async def run(rounds: int) -> dict[str, int]:
    chain = make_chain()
    raws = []
    for nonce in range(2_000):
        raw = bytearray(transfer(nonce=nonce))
        raw[-1] ^= 1
        raws.append(hex0x(bytes(raw)))
    huge = json.dumps([{"jsonrpc": "2.0", "method": "tx_sendBatch", "params": [raws[i * 17:i * 17 + 300]], "id": i}
                       for i in range(100)])
    single = json.dumps({"jsonrpc": "2.0", "method": "tx_sendBatch", "params": [raws], "id": 1})
    async with serve_rpc(chain.ledger) as rpc:
        rpc.server.budgets = ClientBudgets(rate_per_s=1e12, burst=1e12)
        gc.collect()
        figures = {"rss_before_mb": rss_mb(), "python_blocks_before": sys.getallocatedblocks()}
        for _ in range(rounds):
            await rpc.post(huge)
            await rpc.post(single)
        gc.collect()
        figures.update(rss_after_mb=rss_mb(), python_blocks_after=sys.getallocatedblocks(),
                       rejections_kept=len(chain.ledger.recent_rejections))
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        figures["rss_after_malloc_trim_mb"] = rss_mb()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/rpc_memory.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the two requests (default 20)")
    options = parser.parse_args()
    if not 1 <= options.rounds <= 10_000:
        parser.error("--rounds 1..10000")
    print(json.dumps(asyncio.run(run(options.rounds)), indent=2))


if __name__ == "__main__":
    main()
