#!/usr/bin/env python3
"""Benchmark a 4-validator local network: pre-signed transfers from many accounts, sent to all validators.

Prints committed TPS, finality latency p50/p99 (submit -> block notification of a certified block),
CPU seconds and peak RSS per node, consensus messages and bytes per block, the same figures with
one replica killed mid-run, and (unless --skip-single) the single-node TPS of bench_node measured in
the same run, as a ratio. Everything runs on 127.0.0.1 in a temporary folder removed at the end;
only the processes this script started are stopped, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node import crypto  # noqa: E402
from node.genesis import genesis_document, parse_genesis  # noqa: E402
from node.localnet import DEV_ASSETS, GATEWAY_TOKEN_FILE, create_homes, default_genesis, dev_keys, start_node, stop_node, wait_healthy  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_node", Path(__file__).with_name("bench_node.py"))
bench_node = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_node)

CHAIN_ID = "paychain-local"


def network_genesis(accounts: list[crypto.KeyPair], base_port: int) -> dict:
    """The genesis document of the 4-validator network, with `accounts` funded."""
    base = default_genesis(4, base_port=base_port)
    entries = [{"address": crypto.format_address(k.address), "role": "user", "balances": {"CNY": 10_000_000}}
               for k in accounts]
    return genesis_document(CHAIN_ID, base["genesis_time_ms"], DEV_ASSETS, dev_keys("fees").address,
                            base["validators"], entries)


def make_network(home: Path, genesis: dict, base_port: int) -> list:
    node_homes = create_homes(home, 4, base_port, genesis=genesis, write_wallets=False)
    return [start_node(node_home, f"node{i}", base_port + 2 * i) for i, node_home in enumerate(node_homes)]


async def submit_round_robin(session, urls: list[str], raws: list[bytes], batch: int) -> list[tuple[float, list]]:
    sent = []
    batches = [raws[i:i + batch] for i in range(0, len(raws), batch)]

    async def sender(index: int) -> None:
        for number in range(index, len(batches), len(urls)):
            item = batches[number]
            started = time.perf_counter()
            try:
                await bench_node.rpc(session, urls[number % len(urls)], "tx_sendBatch",
                                     ["0x" + raw.hex() for raw in item])
            except (aiohttp.ClientError, RuntimeError):
                try:  # that validator is down: any other will take it
                    await bench_node.rpc(session, urls[(number + 1) % len(urls)], "tx_sendBatch",
                                         ["0x" + raw.hex() for raw in item])
                except (aiohttp.ClientError, RuntimeError):
                    continue
            sent.append((started, item))

    await asyncio.gather(*(sender(i) for i in range(len(urls))))
    return sent


async def submit_paced_round_robin(session, urls: list[str], raws: list[bytes], rate_tps: float,
                                   tick_s: float = 0.05) -> list[tuple[float, list]]:
    per_tick = max(1, int(rate_tps * tick_s))
    sent = []
    start = time.perf_counter()
    for tick, offset in enumerate(range(0, len(raws), per_tick)):
        delay = start + tick * tick_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        item = raws[offset:offset + per_tick]
        sent_at = time.perf_counter()
        await bench_node.rpc(session, urls[tick % len(urls)], "tx_sendBatch", ["0x" + raw.hex() for raw in item])
        sent.append((sent_at, item))
    return sent


async def phase(session, processes, urls, watcher, raws, batch, label, rate_tps: float | None = None) -> dict:
    first_height = max(watcher.arrivals, default=0) + 1
    committed_before = watcher.committed_txs
    cpu_before = [bench_node.cpu_seconds(p.pid) for p in processes]
    info_before = await bench_node.rpc(session, urls[0], "node_status")
    started = time.perf_counter()
    if rate_tps is None:
        sent = await submit_round_robin(session, urls, raws, batch)
    else:
        sent = await submit_paced_round_robin(session, urls, raws, rate_tps)
    submitted = sum(len(item) for _, item in sent)
    await bench_node.wait_committed(watcher, committed_before + submitted, timeout_s=600)
    elapsed = time.perf_counter() - started
    latencies = await bench_node.latencies(session, urls[0], watcher, first_height, sent)
    info_after = await bench_node.rpc(session, urls[0], "node_status")
    blocks = info_after["height"] - info_before["height"]
    cpu = [round(bench_node.cpu_seconds(p.pid) - before, 1) for p, before in zip(processes, cpu_before)]
    return {
        "phase": label, "transfers": submitted, "committed_tps": round(submitted / elapsed),
        "finality_ms": {"p50": round(statistics.median(latencies) * 1000),
                        "p99": round(bench_node.percentile(latencies, 0.99) * 1000)},
        "blocks": blocks, "cpu_s_per_node": cpu,
        "messages_per_block_node0": round((info_after["messages_out"] - info_before["messages_out"]) / max(1, blocks)),
        "bytes_per_block_node0": round((info_after["bytes_out"] - info_before["bytes_out"]) / max(1, blocks)),
    }


async def run(args: argparse.Namespace, home: Path) -> dict:
    accounts = [dev_keys(f"bench-{i}") for i in range(args.accounts)]
    print(f"signing {args.accounts * 4} transfers…", flush=True)
    genesis = network_genesis(accounts, args.port)
    domain = parse_genesis(genesis).signing_domain
    load = bench_node.sign_transfers(domain, accounts, 2, seed=1, first_nonce=0)
    paced = bench_node.sign_transfers(domain, accounts, 1, seed=3, first_nonce=2)
    after_kill = bench_node.sign_transfers(domain, accounts, 1, seed=2, first_nonce=3)
    processes = make_network(home, genesis, args.port)
    urls = [p.rpc_url for p in processes]
    stopped: list[int] = []
    try:
        for process in processes:
            wait_healthy(process.rpc_url, process.pid, timeout_s=60)
        token = (home / GATEWAY_TOKEN_FILE).read_text().strip()   # not held to one client's cost budget
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300),
                                         headers=bench_node.bench_headers(token)) as session:
            watcher = bench_node.BlockWatcher()
            ready = asyncio.Event()
            task = asyncio.create_task(watcher.run(session, urls[0].rsplit("/", 1)[0] + "/ws", ready))
            await asyncio.wait_for(ready.wait(), 10)
            print(f"phase 1: {len(load)} transfers to 4 validators", flush=True)
            full = await phase(session, processes, urls, watcher, load, args.batch, "4 validators")
            rate = full["committed_tps"] / 2
            print(f"phase 2: {len(paced)} transfers paced at {rate:.0f} TPS (half of phase 1)", flush=True)
            half = await phase(session, processes, urls, watcher, paced, args.batch, "4 validators, half load",
                               rate_tps=rate)
            victim = processes[3]
            stop_node(victim)  # SIGTERM then SIGKILL: the replica is gone for the rest of the run
            stopped.append(victim.pid)
            print(f"phase 3: {len(after_kill)} transfers with validator 3 stopped", flush=True)
            degraded = await phase(session, processes[:3], urls[:3], watcher, after_kill, args.batch,
                                   "3 of 4 validators")
            task.cancel()
        rss = [round(bench_node.peak_rss_mb(p.pid), 1) for p in processes[:3]]
    finally:
        for process in processes:
            if process.pid not in stopped:
                stop_node(process)
    return {"full": full, "half_load": half, "one_replica_down": degraded, "peak_rss_mb_nodes_0_2": rss,
            "degraded_over_full": round(degraded["committed_tps"] / full["committed_tps"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--port", type=int, default=29657)
    parser.add_argument("--skip-single", action="store_true", help="do not run bench_node for the ratio")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="paychain-bench-localnet-"))
    try:
        result = asyncio.run(run(args, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if not args.skip_single:
        print("single-node reference (bench_node, same machine, same run)…", flush=True)
        single_args = argparse.Namespace(accounts=args.accounts, rounds=4, latency_rounds=1, batch=1000, senders=2,
                                         port=args.port + 100, profile=None, block_interval_ms=None)
        single_home = Path(tempfile.mkdtemp(prefix="paychain-bench-single-"))
        try:
            single = asyncio.run(bench_node.run_bench(single_args, single_home))
        finally:
            shutil.rmtree(single_home, ignore_errors=True)
        result["single_node_tps"] = single["committed_tps"]
        result["four_over_single"] = round(result["full"]["committed_tps"] / single["committed_tps"], 2)
    print("\n=== bench_localnet (4 validators, this machine) ===")
    print(json.dumps(result, indent=2))
    print("targets: >= 3,000 committed TPS; finality p50 <= 1 s, p99 <= 3 s; RSS <= 300 MB per node; "
          ">= 50% throughput with one replica down")


if __name__ == "__main__":
    main()
