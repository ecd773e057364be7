#!/usr/bin/env python3
"""Benchmark one validator: pre-signed transfers among many accounts, submitted in batches over RPC.

Prints committed TPS at full load, commit latency p50/p99 at half that load, the
node's peak RSS, and raw ed25519 verifications per second on one core (measured in
this run) with the ratio TPS / verifications. Everything runs on 127.0.0.1 in a
temporary folder that is removed at the end; the node process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from node import crypto, limits
from node.config import save_node_key, write_config
from node.genesis import genesis_document, parse_genesis
from node.localnet import dev_keys, wait_healthy
from node.transactions import Transaction, Transfer, sign_transaction

CHAIN_ID = "paychain-bench"


def make_home(folder: Path, accounts: list[crypto.KeyPair], port: int,
              block_interval_ms: int | None) -> crypto.SigningDomain:
    """A single validator's home; the signing domain of its new chain."""
    validator = dev_keys("bench-validator")
    entries = [{"address": crypto.format_address(k.address), "role": "user",
                "balances": {"CNY": 10_000_000}} for k in accounts]
    document = genesis_document(CHAIN_ID, int(time.time() * 1000), [{"code": "CNY", "decimals": 2, "min_fee": 1}],
                                dev_keys("bench-fees").address,
                                [{"name": "v0", "public_key": validator.public_key.hex(), "role": "merchant",
                                  "p2p_address": ""}], entries)
    (folder / "genesis.json").write_text(json.dumps(document))
    write_config(folder, rpc_port=port, p2p_port=port + 1, gateway_tokens=[BENCH_TOKEN])
    if block_interval_ms is not None:
        config = folder / "config.toml"
        lines = [line for line in config.read_text().splitlines() if not line.startswith("block_interval_ms_min")]
        config.write_text("\n".join(lines + [f"block_interval_ms_min = {block_interval_ms}"]) + "\n")
    save_node_key(folder / "validator_key.json", validator)
    return parse_genesis(document).signing_domain


def sign_transfers(domain: crypto.SigningDomain, accounts: list[crypto.KeyPair], rounds: int, seed: int,
                   first_nonce: int = 0) -> list[bytes]:
    """`rounds` transfers per account for the network `domain`, ordered nonce-round by nonce-round so batches
    never leave gaps."""
    rng = random.Random(seed)
    raws = []
    for round_index in range(rounds):
        for index, sender in enumerate(accounts):
            recipient = accounts[(index + rng.randrange(1, len(accounts))) % len(accounts)]
            transaction = Transaction(domain.chain_id, sender.public_key, first_nonce + round_index, "CNY", 1,
                                      Transfer(recipient.address, "CNY", rng.randrange(1, 100)))
            raws.append(sign_transaction(sender, domain, transaction))
    return raws


BENCH_TOKEN = "bench-" + "0" * 58
"""A gateway token the benchmark's node lists: the load generator is one client address and would
otherwise be held to one client's cost budget (node/rpc/budget.py), which is not what is measured here."""


def bench_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def rpc(session: aiohttp.ClientSession, url: str, method: str, *params: object) -> object:
    async with session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}) as r:
        body = await r.json()
    if "error" in body:
        raise RuntimeError(f"{method}: {body['error']}")
    return body["result"]


class BlockWatcher:
    """Records when each block's notification arrives over the WebSocket."""

    def __init__(self) -> None:
        self.arrivals: dict[int, tuple[float, int]] = {}  # height -> (arrival time, tx count)
        self.committed_txs = 0

    async def run(self, session: aiohttp.ClientSession, ws_url: str, ready: asyncio.Event) -> None:
        async with session.ws_connect(ws_url, max_msg_size=0) as socket:
            await socket.send_json({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": ["blocks"]})
            ready.set()
            async for message in socket:
                data = json.loads(message.data)
                if data.get("method") != "subscription":
                    continue
                header = data["params"]["result"]
                self.arrivals[header["height"]] = (time.perf_counter(), header["tx_count"])
                self.committed_txs += header["tx_count"]


async def submit_all(session: aiohttp.ClientSession, url: str, raws: list[bytes], batch: int,
                     senders: int) -> list[tuple[float, list[bytes]]]:
    """Submit as fast as possible from `senders` concurrent connections; returns (send time, batch)."""
    batches = [raws[i:i + batch] for i in range(0, len(raws), batch)]
    sent: list[tuple[float, list[bytes]]] = []
    queue: asyncio.Queue = asyncio.Queue()
    for item in batches:
        queue.put_nowait(item)

    async def sender() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            started = time.perf_counter()
            result = await rpc(session, url, "tx_sendBatch", ["0x" + raw.hex() for raw in item])
            if result["rejected"]:
                errors = {r["error"]["message"] for r in result["results"] if "error" in r}
                raise RuntimeError(f"{result['rejected']} rejected: {sorted(errors)[:3]}")
            sent.append((started, item))

    # A later nonce may arrive before an earlier one from the other connection: the mempool's nonce window admits it.
    await asyncio.gather(*(sender() for _ in range(senders)))
    return sent


async def submit_paced(session: aiohttp.ClientSession, url: str, raws: list[bytes], rate_tps: float,
                       tick_s: float) -> list[tuple[float, list[bytes]]]:
    per_tick = max(1, int(rate_tps * tick_s))
    sent = []
    start = time.perf_counter()
    for tick, offset in enumerate(range(0, len(raws), per_tick)):
        target = start + tick * tick_s
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        item = raws[offset:offset + per_tick]
        sent_at = time.perf_counter()
        result = await rpc(session, url, "tx_sendBatch", ["0x" + raw.hex() for raw in item])
        if result["rejected"]:
            raise RuntimeError(f"{result['rejected']} rejected in the paced phase")
        sent.append((sent_at, item))
    return sent


async def wait_committed(watcher: BlockWatcher, target: int, timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    while watcher.committed_txs < target:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {watcher.committed_txs} of {target} committed after {timeout_s:.0f} s")
        await asyncio.sleep(0.01)


async def latencies(session: aiohttp.ClientSession, url: str, watcher: BlockWatcher, first_height: int,
                    sent: list[tuple[float, list[bytes]]]) -> list[float]:
    sent_at = {}
    for when, item in sent:
        for raw in item:
            sent_at["0x" + crypto.hash_bytes(raw).hex()] = when
    result = []
    for height, (arrived, _count) in sorted(watcher.arrivals.items()):
        if height < first_height:
            continue
        block = await rpc(session, url, "chain_getBlock", height)
        for tx_hash in block["transactions"]:
            if tx_hash in sent_at:
                result.append(arrived - sent_at[tx_hash])
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def verifications_per_second(samples: int = 5, sample_s: float = 0.5) -> float:
    """Median of several short samples: one sample is easily skewed on a shared machine."""
    pair = dev_keys("bench-verify")
    payload = os.urandom(150)
    domain = crypto.SigningDomain(CHAIN_ID, os.urandom(crypto.HASH_BYTES))
    signature = crypto.sign(pair, domain, crypto.TAG_TRANSACTION, payload)
    rates = []
    for _ in range(samples):
        count = 0
        start = time.perf_counter()
        while time.perf_counter() - start < sample_s:
            for _ in range(200):
                crypto.verify(pair.public_key, domain, crypto.TAG_TRANSACTION, payload, signature)
            count += 200
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run_bench(args: argparse.Namespace, home: Path) -> dict:
    accounts = [dev_keys(f"bench-{i}") for i in range(args.accounts)]
    port = args.port
    domain = make_home(home, accounts, port, args.block_interval_ms)
    print(f"signing {args.accounts * args.rounds} + {args.accounts * args.latency_rounds} transfers…", flush=True)
    load = sign_transfers(domain, accounts, args.rounds, seed=1)
    paced = sign_transfers(domain, accounts, args.latency_rounds, seed=2, first_nonce=args.rounds)
    env = dict(os.environ)
    if args.profile:
        env["PAYCHAIN_PROFILE"] = str(Path(args.profile).resolve())
    log = open(home / "node.log", "wb")
    node = subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--home", str(home)], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/rpc"
    try:
        wait_healthy(url, node.pid, timeout_s=60)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout, headers=bench_headers(BENCH_TOKEN)) as session:
            watcher = BlockWatcher()
            ready = asyncio.Event()
            watch_task = asyncio.create_task(watcher.run(session, f"http://127.0.0.1:{port}/ws", ready))
            await asyncio.wait_for(ready.wait(), 10)
            print(f"phase 1: {len(load)} transfers as fast as possible, batches of {args.batch}", flush=True)
            started = time.perf_counter()
            cpu_before = cpu_seconds(node.pid)
            sent = await submit_all(session, url, load, args.batch, args.senders)
            await wait_committed(watcher, len(load), timeout_s=300)
            elapsed = time.perf_counter() - started
            node_cpu_us_per_tx = (cpu_seconds(node.pid) - cpu_before) / len(load) * 1e6
            tps = len(load) / elapsed
            full_latencies = await latencies(session, url, watcher, 1, sent)
            first_paced_height = max(watcher.arrivals) + 1
            print(f"  committed {len(load)} in {elapsed:.2f} s = {tps:,.0f} TPS", flush=True)
            rate = tps / 2
            print(f"phase 2: {len(paced)} transfers paced at {rate:,.0f} TPS (half of phase 1)", flush=True)
            paced_sent = await submit_paced(session, url, paced, rate, tick_s=0.05)
            await wait_committed(watcher, len(load) + len(paced), timeout_s=300)
            half_latencies = await latencies(session, url, watcher, first_paced_height, paced_sent)
            watch_task.cancel()
            status = await rpc(session, url, "node_status")
        rss = peak_rss_mb(node.pid)
    except BaseException:
        print("node log (last lines):\n" + "\n".join((home / "node.log").read_text().splitlines()[-15:]))
        raise
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        log.close()
    verify_rate = verifications_per_second()
    blocks = [count for height, (_, count) in watcher.arrivals.items()]
    return {
        "accounts": args.accounts, "transfers_full_load": len(load), "transfers_half_load": len(paced),
        "committed_tps": round(tps), "elapsed_s": round(elapsed, 2),
        "latency_full_load_ms": {"p50": round(statistics.median(full_latencies) * 1000),
                                 "p99": round(percentile(full_latencies, 0.99) * 1000)},
        "latency_half_load_ms": {"p50": round(statistics.median(half_latencies) * 1000),
                                 "p99": round(percentile(half_latencies, 0.99) * 1000)},
        "blocks": len(blocks), "txs_per_block_median": statistics.median(blocks),
        "node_peak_rss_mb": round(rss, 1),
        "node_main_process_cpu_us_per_tx": round(node_cpu_us_per_tx), "final_height": status["height"],
        "ed25519_verify_per_s_one_core": round(verify_rate),
        "tps_over_verify_rate": round(tps / verify_rate, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=4, help="transfers per account at full load")
    parser.add_argument("--latency-rounds", type=int, default=2, help="transfers per account at half load")
    parser.add_argument("--batch", type=int, default=1000, help=f"txs per tx_sendBatch (max "
                                                                f"{limits.rpc_send_batch_txs_max})")
    parser.add_argument("--senders", type=int, default=2, help="concurrent submitting connections")
    parser.add_argument("--port", type=int, default=28657)
    parser.add_argument("--block-interval-ms", type=int, help="node's block_interval_ms_min (default: its config)")
    parser.add_argument("--profile", help="write the node's cProfile stats to this file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="paychain-bench-"))
    try:
        result = asyncio.run(run_bench(args, home))
    finally:
        if os.environ.get("BENCH_KEEP_LOG"):
            shutil.copy(home / "node.log", os.environ["BENCH_KEEP_LOG"])
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("\n=== bench_node (one validator, this machine) ===")
    for key, value in result.items():
        print(f"{key:<32} {value}")
    print("targets: >= 5,000 committed TPS; p99 <= 1,000 ms at half load; RSS <= 300 MB")


if __name__ == "__main__":
    main()
