#!/usr/bin/env python3
"""Benchmark the system orders contract: `create_order` calls finalized on a 4-validator local network.

Network (127.0.0.1, a temporary folder removed at the end, only the PIDs this script started are
stopped): N pre-signed `create_order` calls, each from a different buyer, sent with `tx_sendBatch` to
all validators in rotation, first as fast as possible, then N/2 more paced at half the measured rate.
For each phase: orders per second finalized, finality p50/p99 (submit -> block notification),
failed receipts (exact: the catalog's stock must drop by one per successful order), CPU seconds per
node (main process and its signature-verifier workers), and the machine's busy cores with the share
other processes took (the machine may be shared).

In-process (no network, medians of several repetitions): µs per `create_order` and per `get_order`
through `node.contracts.runtime.call`, µs per `execution.apply_transaction` of a signed order and per
`open_transaction` (decode + ed25519), raw VM gas per second on a tight loop, and one validator's
ledger on LevelDB (admit, propose, commit blocks of orders). From these it estimates where the
network's CPU goes. Target: >= 1,000 orders/s finalized on 4 validators.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node import blocks, crypto, encoding, limits  # noqa: E402
from node.app import Ledger  # noqa: E402
from node.contracts import runtime  # noqa: E402
from node.contracts.host import AttachedValue  # noqa: E402
from node.contracts.vm import call_function, load_program  # noqa: E402
from node.execution import BlockContext, apply_transaction  # noqa: E402
from node.genesis import Genesis, genesis_document, parse_genesis  # noqa: E402
from node.localnet import (DEFAULT_CHAIN_ID, DEV_ASSETS, GATEWAY_TOKEN_FILE, NodeProcess, create_homes, default_genesis,  # noqa: E402
                           dev_keys, rpc_port_of, start_node, stop_node, wait_healthy)
from node.contracts.values_json import value_json  # noqa: E402
from node.state import State  # noqa: E402
from node.storage.chain import ChainStore  # noqa: E402
from node.storage.kv import LevelDbStore  # noqa: E402
from node.transactions import CallContract, Transaction, open_transaction, required_fee, sign_transaction  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_localnet", Path(__file__).with_name("bench_localnet.py"))
bench_localnet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_localnet)
bench_node = bench_localnet.bench_node

CHAIN_ID = DEFAULT_CHAIN_ID
VALIDATORS = 4
FEE_ASSET = "CNY"
BUYER_BALANCE_MINOR = 10_000_000
MERCHANT_BALANCE_MINOR = 1_000_000
PRODUCT_ID = "bench-item"
PRODUCT_PRICE_MINOR = 100
PRODUCT_STOCK = 1_000_000
PRODUCT_PER_ORDER_LIMIT = 10
ORDER_GAS_LIMIT = 30_000
"""create_order uses about 13,000 gas (most of it the per-byte price of the order it stores); the fee pays for the
limit (1 minor unit per 1,000 gas)."""
ORDER_VALUE = AttachedValue(FEE_ASSET, PRODUCT_PRICE_MINOR)
"""What each benchmark order (one unit) attaches: its total."""
CATALOG_COMMIT_TIMEOUT_S = 30.0
TARGET_ORDERS_PER_S = 1_000
SPIN_SOURCE = '''
def spin(count):
    total = 0
    index = 0
    while index < count:
        total = total + index * 3 % 7
        index = index + 1
    return total
'''
SPIN_COUNT = 20_000
"""Loop turns of one raw-VM sample (well under contract_gas_max)."""


# --- signing ------------------------------------------------------------------------------------

def contract_call(keys: crypto.KeyPair, domain: crypto.SigningDomain, nonce: int, contract: bytes, function: str,
                  args: tuple, min_fee: int, value: int = 0) -> bytes:
    """A call signed for the network `domain`, attaching `value` minor units of FEE_ASSET, paying exactly the least
    fee its gas limit allows."""
    body = CallContract(contract, function, encoding.encode_value(args), ORDER_GAS_LIMIT, FEE_ASSET if value else "",
                        value)
    fee = required_fee(Transaction(domain.chain_id, keys.public_key, nonce, FEE_ASSET, 0, body), min_fee)
    return sign_transaction(keys, domain, Transaction(domain.chain_id, keys.public_key, nonce, FEE_ASSET, fee, body))


def sign_orders(domain: crypto.SigningDomain, buyers: list[crypto.KeyPair], merchants: list[crypto.KeyPair],
                contract: bytes, nonce: int, min_fee: int) -> list[bytes]:
    """One create_order per buyer (buyer i buys one unit from merchant i mod M)."""
    return [contract_call(buyer, domain, nonce, contract, "create_order",
                          (merchants[i % len(merchants)].address, PRODUCT_ID, 1, PRODUCT_PRICE_MINOR, FEE_ASSET),
                          min_fee, value=PRODUCT_PRICE_MINOR) for i, buyer in enumerate(buyers)]


def catalog_args() -> tuple:
    return (PRODUCT_ID, "Benchmark item", PRODUCT_PRICE_MINOR, FEE_ASSET, PRODUCT_STOCK, PRODUCT_PER_ORDER_LIMIT)


def sign_catalog_adds(domain: crypto.SigningDomain, merchants: list[crypto.KeyPair], contract: bytes,
                      min_fee: int) -> list[bytes]:
    """Each merchant's first transaction: add the benchmark product to its catalog."""
    return [contract_call(merchant, domain, 0, contract, "catalog_add", catalog_args(), min_fee)
            for merchant in merchants]


def make_genesis_document(buyers: list[crypto.KeyPair], merchants: list[crypto.KeyPair],
                          base_port: int) -> dict[str, Any]:
    """The local network's validators and orders contract, with our buyers and merchants as the only accounts."""
    base = default_genesis(VALIDATORS, base_port=base_port)
    entries = [{"address": crypto.format_address(k.address), "role": "user",
                "balances": {FEE_ASSET: BUYER_BALANCE_MINOR}} for k in buyers]
    entries += [{"address": crypto.format_address(k.address), "role": "merchant",
                 "balances": {FEE_ASSET: MERCHANT_BALANCE_MINOR}} for k in merchants]
    return genesis_document(CHAIN_ID, base["genesis_time_ms"], DEV_ASSETS, dev_keys("fees").address,
                            base["validators"], entries, deployers=[], contracts=base["contracts"])


# --- in-process microbenchmarks -----------------------------------------------------------------

class NoHost:
    """A VM host with no host functions: the raw interpreter only."""

    def host_functions(self) -> dict[str, int]:
        return {}

    def call_host(self, name: str, args: tuple) -> None:
        raise AssertionError(f"the spin contract calls no host function ({name})")


def state_with_catalog(genesis: Genesis, merchants: list[crypto.KeyPair]) -> State:
    state = State(genesis.state())
    contract = genesis.params.contract("orders")
    for merchant in merchants:
        runtime.call(state, merchant.address, contract, "catalog_add", encoding.encode_value(catalog_args()),
                     ORDER_GAS_LIMIT, 1, genesis.params.genesis_time_ms)
    return state


def median_us_per_item(repetitions: int, items_per_repetition: int, run: Callable[[int], None]) -> float:
    """Median over repetitions of (wall time of run(repetition)) / items."""
    samples = []
    for repetition in range(repetitions):
        started = time.perf_counter()
        run(repetition)
        samples.append((time.perf_counter() - started) / items_per_repetition * 1e6)
    return round(statistics.median(samples), 1)


def contract_call_timings(genesis: Genesis, buyers: list[crypto.KeyPair], merchants: list[crypto.KeyPair],
                          repetitions: int, calls: int) -> dict[str, Any]:
    """µs per create_order and per get_order through runtime.call (no fee, nonce or signature)."""
    state = state_with_catalog(genesis, merchants)
    contract, time_ms = genesis.params.contract("orders"), genesis.params.genesis_time_ms
    order_args = [encoding.encode_value((merchants[i % len(merchants)].address, PRODUCT_ID, 1, PRODUCT_PRICE_MINOR,
                                         FEE_ASSET)) for i in range(calls)]
    order_ids: list[bytes] = []
    gas_used: list[int] = []

    def create(repetition: int) -> None:
        for i in range(calls):
            outcome = runtime.call(state, buyers[i].address, contract, "create_order", order_args[i],
                                   ORDER_GAS_LIMIT, 2 + repetition, time_ms, value=ORDER_VALUE)
            order_ids.append(outcome.value)
            gas_used.append(outcome.gas_used)

    def query(repetition: int) -> None:
        for order_id in order_ids[repetition * calls:(repetition + 1) * calls]:
            outcome = runtime.call(state, bytes(20), contract, "get_order", encoding.encode_value((order_id,)),
                                   limits.contract_query_gas_max, 10, time_ms, read_only=True)
            assert outcome.value is not None, "get_order found no order it just created"

    create_us = median_us_per_item(repetitions, calls, create)
    get_us = median_us_per_item(repetitions, calls, query)
    return {"create_order_us": create_us, "get_order_us": get_us,
            "create_order_gas_used": round(statistics.median(gas_used))}


def transaction_timings(genesis: Genesis, merchants: list[crypto.KeyPair], raws: list[bytes], repetitions: int,
                        calls: int) -> dict[str, Any]:
    """µs per open_transaction (decode + ed25519 verify) and per apply_transaction of the signed orders.

    Also a pre-flight check: every applied order must succeed, so the network phases send valid orders."""
    state = state_with_catalog(genesis, merchants)
    context = BlockContext(2, genesis.params.genesis_time_ms + 1000)
    envelopes = []
    failures: dict[str, int] = {}

    def open_all(repetition: int) -> None:
        chunk = raws[repetition * calls:(repetition + 1) * calls]
        envelopes.extend(open_transaction(raw, genesis.signing_domain) for raw in chunk)

    def apply_all(repetition: int) -> None:
        for envelope in envelopes[repetition * calls:(repetition + 1) * calls]:
            receipt = apply_transaction(state, envelope, context)
            if not receipt.success:
                failures[receipt.code] = failures.get(receipt.code, 0) + 1

    open_us = median_us_per_item(repetitions, calls, open_all)
    apply_us = median_us_per_item(repetitions, calls, apply_all)
    if failures:
        raise RuntimeError(f"pre-flight: signed create_order transactions failed in-process: {failures}")
    return {"open_transaction_us": open_us, "apply_transaction_us": apply_us}


def ledger_timings(genesis: Genesis, merchants: list[crypto.KeyPair], raws: list[bytes], block_orders: int,
                   folder: Path) -> dict[str, Any]:
    """One validator's ledger on LevelDB, no network: µs per order to admit it (check_tx: decode, verify,
    mempool), to propose a block (reap, execute, state root) and to commit it (synced store write).

    Medians over blocks of `block_orders` signed orders; every order must succeed."""
    from tests.support import certify  # the test helper that signs a commit certificate

    store = LevelDbStore(folder)
    try:
        ledger = Ledger(ChainStore(store, genesis), clock_ms=lambda: genesis.params.genesis_time_ms)
        signers = [dev_keys(f"validator-{i}") for i in range(blocks.quorum_size(VALIDATORS))]
        samples: dict[str, list[float]] = {"admit_us": [], "propose_us": [], "commit_us": []}
        min_fee = genesis.params.asset(FEE_ASSET).min_fee
        chunks = [sign_catalog_adds(genesis.signing_domain, merchants, genesis.params.contract("orders"), min_fee)]
        chunks += [raws[i:i + block_orders] for i in range(0, len(raws) - block_orders + 1, block_orders)]
        for height, chunk in enumerate(chunks, start=1):
            started = time.perf_counter()
            for raw in chunk:
                ledger.check_tx(raw)
            admitted = time.perf_counter()
            block = ledger.prepare_proposal(height, 0, signers[0].address, genesis.params.genesis_time_ms + height,
                                            txs_max=len(chunk))
            proposed = time.perf_counter()
            committed = ledger.commit(block, certify(block, signers, genesis.signing_domain))
            finished = time.perf_counter()
            failed = [r.code for r in committed.receipts if not r.success]
            if len(committed.receipts) != len(chunk) or failed:
                raise RuntimeError(f"in-process block {height}: {len(committed.receipts)} of {len(chunk)} "
                                   f"included, failed: {failed[:5]}")
            if height > 1:  # block 1 is the catalog
                for name, seconds in (("admit_us", admitted - started), ("propose_us", proposed - admitted),
                                      ("commit_us", finished - proposed)):
                    samples[name].append(seconds / len(chunk) * 1e6)
    finally:
        store.close()
    result: dict[str, Any] = {name: round(statistics.median(values), 1) for name, values in samples.items()}
    result.update({"ledger_blocks": len(chunks) - 1, "ledger_orders_per_block": block_orders})
    return result


def vm_gas_per_second(repetitions: int) -> int:
    program = load_program(SPIN_SOURCE)
    rates = []
    for _ in range(repetitions):
        started = time.perf_counter()
        result = call_function(program, "spin", (SPIN_COUNT,), NoHost(), limits.contract_gas_max)
        rates.append(result.gas_used / (time.perf_counter() - started))
    return round(statistics.median(rates))


def microbenchmarks(genesis: Genesis, buyers: list[crypto.KeyPair], merchants: list[crypto.KeyPair],
                    signed_orders: list[bytes], repetitions: int, folder: Path) -> dict[str, Any]:
    calls = min(400, len(signed_orders) // repetitions)
    if calls == 0:
        raise ValueError(f"--orders must be at least --repetitions ({repetitions})")
    result: dict[str, Any] = {"repetitions": repetitions, "calls_per_repetition": calls}
    result.update(contract_call_timings(genesis, buyers, merchants, repetitions, calls))
    result.update(transaction_timings(genesis, merchants, signed_orders, repetitions, calls))
    result["vm_gas_per_s_tight_loop"] = vm_gas_per_second(repetitions)
    block_orders = min(limits.pbft_block_txs_max, len(signed_orders) // repetitions)
    result.update(ledger_timings(genesis, merchants, signed_orders, block_orders, folder))
    return result


# --- CPU accounting -----------------------------------------------------------------------------

def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (a node's signature-verifier worker processes)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def cpu_snapshot(pids: list[int]) -> list[tuple[float, dict[int, float]]]:
    """Per node: (main process CPU seconds, {worker pid: CPU seconds})."""
    snapshot = []
    for pid in pids:
        workers = {}
        for child in child_pids(pid):
            try:
                workers[child] = bench_node.cpu_seconds(child)
            except OSError:
                pass  # exited between the listing and the read
        snapshot.append((bench_node.cpu_seconds(pid), workers))
    return snapshot


def cpu_delta(before: list[tuple[float, dict[int, float]]],
              after: list[tuple[float, dict[int, float]]]) -> tuple[list[float], list[float]]:
    """(main CPU seconds per node, worker CPU seconds per node) spent between two snapshots."""
    main = [round(a[0] - b[0], 1) for b, a in zip(before, after)]
    workers = [round(sum(cpu - b[1].get(pid, 0.0) for pid, cpu in a[1].items()), 1) for b, a in zip(before, after)]
    return main, workers


def machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine have used (every core), from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# --- the network --------------------------------------------------------------------------------

class Network:
    """The running validators as seen by the client: RPC urls, the block watcher, the orders contract."""

    def __init__(self, session: aiohttp.ClientSession, processes: list[NodeProcess], contract: bytes,
                 merchants: list[crypto.KeyPair]) -> None:
        self.session = session
        self.processes = processes
        self.urls = [p.rpc_url for p in processes]
        self.contract = contract
        self.merchants = merchants
        self.watcher = bench_node.BlockWatcher()

    async def rpc(self, method: str, *params: object) -> Any:
        return await bench_node.rpc(self.session, self.urls[0], method, *params)

    async def units_sold(self) -> int:
        """Units sold so far over all merchants' benchmark products (one per successful order)."""
        sold = 0
        for merchant in self.merchants:
            product = await self.rpc("contract_query", crypto.format_address(self.contract), "catalog_get",
                                     [value_json(merchant.address), PRODUCT_ID])
            sold += PRODUCT_STOCK - product["value"]["stock"]
        return sold

    async def wait_receipts(self, hashes: list[str], timeout_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        receipts = []
        for tx_hash in hashes:
            while (found := await self.rpc("tx_get", tx_hash))["status"] != "committed":
                if found["status"] == "rejected" or time.monotonic() > deadline:
                    raise RuntimeError(f"transaction {tx_hash} not committed: {found}")
                await asyncio.sleep(0.1)
            receipts.append(found["receipt"])
        return receipts

    async def failure_codes(self, sent: list[tuple[float, list[bytes]]], lookups_max: int = 2_000) -> dict[str, int]:
        """Receipt codes of the failed transactions among (at most `lookups_max` of) those sent."""
        codes: dict[str, int] = {}
        hashes = ["0x" + crypto.hash_bytes(raw).hex() for _, item in sent for raw in item][:lookups_max]
        for tx_hash in hashes:
            found = await self.rpc("tx_get", tx_hash)
            receipt = found.get("receipt")
            if receipt is None or not receipt["success"]:
                code = found["status"] if receipt is None else receipt["code"]
                codes[code] = codes.get(code, 0) + 1
        return codes


async def add_catalog(network: Network, raws: list[bytes]) -> None:
    """Each merchant adds the benchmark product (`raws`: the signed catalog_adds); returns when every catalog_add
    committed successfully."""
    result = await network.rpc("tx_sendBatch", ["0x" + raw.hex() for raw in raws])
    if result["rejected"]:
        raise RuntimeError(f"catalog_add rejected: {result['results']}")
    receipts = await network.wait_receipts([r["hash"] for r in result["results"]], CATALOG_COMMIT_TIMEOUT_S)
    failed = [r for r in receipts if not r["success"]]
    if failed:
        raise RuntimeError(f"catalog_add failed: {[(r['code'], r['message']) for r in failed]}")


async def phase(network: Network, raws: list[bytes], label: str, batch: int, timeout_s: float,
                rate_tps: float | None = None) -> dict[str, Any]:
    watcher = network.watcher
    first_height = max(watcher.arrivals, default=0) + 1
    committed_before, sold_before = watcher.committed_txs, await network.units_sold()
    pids = [p.pid for p in network.processes]
    cpu_before, busy_before, client_before = cpu_snapshot(pids), machine_busy_seconds(), time.process_time()
    started = time.perf_counter()
    if rate_tps is None:
        sent = await bench_localnet.submit_round_robin(network.session, network.urls, raws, batch)
    else:
        sent = await bench_localnet.submit_paced_round_robin(network.session, network.urls, raws, rate_tps)
    submitted = sum(len(item) for _, item in sent)
    await bench_node.wait_committed(watcher, committed_before + submitted, timeout_s=timeout_s)
    elapsed = time.perf_counter() - started
    main_cpu, worker_cpu = cpu_delta(cpu_before, cpu_snapshot(pids))
    client_cpu = time.process_time() - client_before
    busy_cores = (machine_busy_seconds() - busy_before) / elapsed
    others_cores = busy_cores - (sum(main_cpu) + sum(worker_cpu) + client_cpu) / elapsed
    latencies = await bench_node.latencies(network.session, network.urls[0], watcher, first_height, sent)
    failed = submitted - (await network.units_sold() - sold_before)
    per_block = [count for height, (_, count) in watcher.arrivals.items() if height >= first_height]
    return {
        "phase": label, "orders": submitted, "elapsed_s": round(elapsed, 2),
        "orders_per_s_finalized": round(submitted / elapsed),
        "finality_ms": {"p50": round(statistics.median(latencies) * 1000),
                        "p99": round(bench_node.percentile(latencies, 0.99) * 1000)},
        "failed_receipts": failed, "failure_codes": await network.failure_codes(sent) if failed else {},
        "blocks": len(per_block), "orders_per_block_median": statistics.median(per_block) if per_block else 0,
        "cpu_s_per_node_main": main_cpu, "cpu_s_per_node_verifier_workers": worker_cpu,
        "cpu_s_bench_client": round(client_cpu, 1), "machine_busy_cores": round(busy_cores, 2),
        "machine_busy_cores_other_processes": round(max(0.0, others_cores), 2),
    }


def print_log_tails(processes: list[NodeProcess], lines: int = 10) -> None:
    for process in processes:
        log = process.home / "node.log"
        tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
        print(f"--- {process.name} node.log (last {len(tail)} lines)\n" + "\n".join(tail))


async def run_network(args: argparse.Namespace, home: Path, genesis_document_json: dict[str, Any], contract: bytes,
                      merchants: list[crypto.KeyPair], catalog_adds: list[bytes], full_load: list[bytes],
                      half_load: list[bytes]) -> dict[str, Any]:
    node_homes = create_homes(home, VALIDATORS, args.port, genesis=genesis_document_json, write_wallets=False)
    processes: list[NodeProcess] = []
    try:
        for index, node_home in enumerate(node_homes):
            processes.append(start_node(node_home, f"node{index}", rpc_port_of(args.port, index)))
        for process in processes:
            wait_healthy(process.rpc_url, process.pid, timeout_s=60)
        token = (home / GATEWAY_TOKEN_FILE).read_text().strip()   # not held to one client's cost budget
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60),
                                         headers={"Authorization": f"Bearer {token}"}) as session:
            network = Network(session, processes, contract, merchants)
            ready = asyncio.Event()
            watch = asyncio.create_task(network.watcher.run(session, network.urls[0].rsplit("/", 1)[0] + "/ws", ready))
            try:
                await asyncio.wait_for(ready.wait(), 10)
                print(f"catalog: {len(merchants)} merchants add {PRODUCT_ID!r} (stock {PRODUCT_STOCK:,})", flush=True)
                await add_catalog(network, catalog_adds)
                print(f"phase 1: {len(full_load):,} create_order calls to {VALIDATORS} validators", flush=True)
                full = await phase(network, full_load, "full load", args.batch, args.phase_timeout_s)
                rate = full["orders_per_s_finalized"] / 2
                print(f"phase 2: {len(half_load):,} create_order calls paced at {rate:,.0f}/s", flush=True)
                half = await phase(network, half_load, "half load", args.batch, args.phase_timeout_s, rate_tps=rate)
                sample = await network.rpc("tx_get", "0x" + crypto.hash_bytes(full_load[0]).hex())
            finally:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
        rss = [round(bench_node.peak_rss_mb(p.pid), 1) for p in processes]
    except Exception:
        print_log_tails(processes)
        raise
    finally:
        for process in processes:
            stop_node(process)
    return {"full_load": full, "half_load": half, "peak_rss_mb_per_node": rss,
            "create_order_gas_used_on_chain": sample["receipt"]["gas_used"]}


def where_time_goes(micro: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """The nodes' measured CPU per order at full load against one in-process ledger's time per order (admit +
    propose + commit, wall time) and contract execution's alone (apply_transaction), times the validators."""
    node_cpu_s = sum(full["cpu_s_per_node_main"]) + sum(full["cpu_s_per_node_verifier_workers"])
    measured_us = node_cpu_s / full["orders"] * 1e6
    ledger_us = micro["admit_us"] + micro["propose_us"] + micro["commit_us"]
    execution_us = micro["apply_transaction_us"]
    cores = os.cpu_count() or 1
    return {
        "node_cpu_us_per_order_all_validators": round(measured_us),
        "ledger_us_per_order_one_validator": round(ledger_us),
        "ledger_share_of_node_cpu": round(VALIDATORS * ledger_us / measured_us, 2),
        "execution_share_of_node_cpu": round(VALIDATORS * execution_us / measured_us, 2),
        "orders_per_s_if_only_ledger": round(cores * 1e6 / (VALIDATORS * ledger_us)),
        "orders_per_s_if_only_execution": round(cores * 1e6 / (VALIDATORS * execution_us)),
        "cores": cores,
    }

def print_summary(result: dict[str, Any]) -> None:
    full, half = result["full_load"], result["half_load"]
    micro, shares = result["in_process"], result["where_time_goes"]
    print("\n=== bench_orders (orders contract, 4 validators, this machine) ===")
    print(json.dumps(result, indent=2))
    print(f"full load: {full['orders_per_s_finalized']:,} orders/s finalized, finality p50 "
          f"{full['finality_ms']['p50']} ms p99 {full['finality_ms']['p99']} ms; half load: "
          f"{half['orders_per_s_finalized']:,} orders/s, p50 {half['finality_ms']['p50']} ms "
          f"p99 {half['finality_ms']['p99']} ms; failed receipts {full['failed_receipts'] + half['failed_receipts']}")
    print(f"where time goes: the nodes spent {shares['node_cpu_us_per_order_all_validators']:,} µs of CPU per order "
          f"in all ({VALIDATORS} validators); one in-process ledger takes "
          f"{shares['ledger_us_per_order_one_validator']} µs per order (admit {micro['admit_us']}, "
          f"propose {micro['propose_us']}, commit {micro['commit_us']}), "
          f"x {VALIDATORS} = {shares['ledger_share_of_node_cpu']:.0%} of it, of which contract execution "
          f"({micro['apply_transaction_us']} µs) is {shares['execution_share_of_node_cpu']:.0%}; the rest is "
          f"consensus, p2p and RPC")
    print(f"ceilings on {shares['cores']} cores: {shares['orders_per_s_if_only_ledger']:,} orders/s if the ledger "
          f"were the only cost, {shares['orders_per_s_if_only_execution']:,} if contract execution were")
    print(f"target: >= {TARGET_ORDERS_PER_S:,} orders/s finalized on {VALIDATORS} validators")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5_000, help="create_order calls at full load (half at half)")
    parser.add_argument("--merchants", type=int, default=4, help="merchants, one benchmark product each")
    parser.add_argument("--batch", type=int, default=500, help=f"txs per tx_sendBatch (max "
                                                               f"{limits.rpc_send_batch_txs_max})")
    parser.add_argument("--port", type=int, default=30657, help="node i serves RPC on port + 2i, p2p on port + 2i + 1")
    parser.add_argument("--repetitions", type=int, default=5, help="repetitions of each in-process measurement")
    parser.add_argument("--phase-timeout-s", type=float, default=60.0, help="longest wait for a phase to commit")
    args = parser.parse_args()
    load_average_start = os.getloadavg()
    buyers = [dev_keys(f"bench-orders-buyer-{i}") for i in range(args.orders)]
    merchants = [dev_keys(f"bench-orders-merchant-{i}") for i in range(args.merchants)]
    document = make_genesis_document(buyers, merchants, args.port)
    genesis = parse_genesis(document)
    contract = genesis.params.contract("orders")
    min_fee = genesis.params.asset(FEE_ASSET).min_fee
    print(f"signing {args.orders:,} + {args.orders // 2:,} create_order calls…", flush=True)
    catalog_adds = sign_catalog_adds(genesis.signing_domain, merchants, contract, min_fee)
    full_load = sign_orders(genesis.signing_domain, buyers, merchants, contract, 0, min_fee)
    half_load = sign_orders(genesis.signing_domain, buyers[:args.orders // 2], merchants, contract, 1, min_fee)
    home = Path(tempfile.mkdtemp(prefix="paychain-bench-orders-"))
    try:
        print(f"in-process microbenchmarks ({args.repetitions} repetitions)…", flush=True)
        busy_before, own_before, started = machine_busy_seconds(), time.process_time(), time.perf_counter()
        micro = microbenchmarks(genesis, buyers, merchants, full_load, args.repetitions, home / "ledger")
        others_cores = ((machine_busy_seconds() - busy_before) - (time.process_time() - own_before)) \
            / (time.perf_counter() - started)
        micro["machine_busy_cores_other_processes"] = round(max(0.0, others_cores), 2)
        network = asyncio.run(run_network(args, home, document, contract, merchants, catalog_adds, full_load,
                                           half_load))
    except KeyboardInterrupt:
        sys.exit("interrupted: the nodes this run started are stopped and its temporary folder is removed")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    result = {"validators": VALIDATORS, "merchants": args.merchants, "order_gas_limit": ORDER_GAS_LIMIT,
              **network, "in_process": micro, "where_time_goes": where_time_goes(micro, network["full_load"]),
              "load_average_1m_start_end": [round(load_average_start[0], 2), round(os.getloadavg()[0], 2)]}
    print_summary(result)


if __name__ == "__main__":
    main()
