#!/usr/bin/env python3
"""Benchmark the payment gateway on a 4-validator local network (`paychain localnet up --gateway`).

1. Payment creation: N `POST /v1/payments` through the merchant API from load-generator processes
   (aiohttp, C requests in flight in all), against the one gateway process. Prints payments per second,
   client latency p50/p99, the request time the gateway logs (aiohttp access log), errors (must be 0),
   the gateway process's CPU (cores used) and RSS, and the machine's busy cores with the share other
   processes took (the machine may be shared). Target: >= 500 payments/s.
2. Pay to webhook: M checkouts paid the way the checkout page does it (`prepare` -> sign with the
   buyer's key -> `submit`, with the CSRF double submit), a few buyers in parallel, each from its own
   loopback address (the public rate limit is per client address) and each paying one checkout at a
   time (prepare uses the account's pending nonce). Timed from the `prepare` call (the shopper's
   click) to the `payment.paid` notification arriving at the demo merchant's webhook receiver
   (its `/events` log), and to `paid` as seen by polling `GET /api/checkout/{id}`; split into
   prepare, submit, block committed (the client's block subscription), gateway recorded `paid`
   (the payment's history) and webhook received. Counts duplicate `payment.paid` notifications.
   Target: p50 <= 2 s.
3. Where the time goes (in-process, same disk): µs per `PaymentBook.create` on LevelDB (one synced
   write batch, as the gateway does it) and on the in-memory store, and one synced LevelDB write
   alone; the first is what one payment costs the gateway's event loop outside HTTP. With --profile,
   py-spy samples the gateway during phase 1 and the top frames are printed.

Everything runs on 127.0.0.1 (ports --port .. --port+9), in --home (by default a temporary folder,
removed at the end unless --keep); the local network is stopped at the end, on error too, and the run
is capped at --time-cap-s.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.payments import PaymentBook  # noqa: E402
from gateway.store import GatewayStore  # noqa: E402
from node import crypto, encoding, limits  # noqa: E402
from node.localnet import DEV_PASSWORD, dev_keys, load_processes  # noqa: E402
from node.rpc.views import signing_domain_from_json  # noqa: E402
from node.storage.kv import LevelDbStore  # noqa: E402
from node.transactions import Register, Role, Transaction, Transfer, required_fee, sign_transaction  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_orders", Path(__file__).with_name("bench_orders.py"))
bench_orders = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_orders)
bench_node = bench_orders.bench_node

BIN = Path(sys.executable).parent
VALIDATORS = 4
PORTS_USED = 2 * VALIDATORS + 2
"""Validators' RPC and p2p ports, then the gateway's and the webhook receiver's."""
CURRENCY = "CNY"
PRODUCT_ID = "tea"
PRODUCT_NAME = "Green tea"
PRODUCT_PRICE = "12.50"
PRODUCT_STOCK = 1_000_000
PRODUCT_PER_ORDER_LIMIT = 5
BUYER_BALANCE_MINOR = 1_000_000
"""10,000.00 CNY per benchmark buyer, from alice: hundreds of 12.50 CNY checkouts."""
WARMUP_PAYMENTS = 100
"""Created (not counted) before phase 1: connections opened, catalog entry cached."""
CSRF_COOKIE = "paychain_csrf"
CSRF_HEADER = "X-CSRF-Token"
FOLLOWED_STATES = ("awaiting_payment", "submitted")
"""The checkout page polls while the payment is in one of these."""
BUYER_ADDRESS_FIRST = 10
"""Buyer i connects from 127.0.0.(10 + i): each shopper has its own client address, as in real life."""
BUYERS_MAX = 200
PAID_MAX = 450
"""Each paid checkout makes two notifications (submitted, paid); the demo receiver keeps the last 1,000."""
PAID_TIMEOUT_S = 30.0
WEBHOOKS_TIMEOUT_S = 30.0
SETUP_TX_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
WORKER_START_DELAY_S = 3.0
"""Load-generator processes import this script first (about 1 s); they all begin sending this long after being
started, when the gateway's CPU and the machine's are first read."""
CLI_TIMEOUT_S = 120.0
MICRO_WRITES = 300
TARGET_PAYMENTS_PER_S = 500
TARGET_PAY_TO_WEBHOOK_P50_S = 2.0
PROFILE_FRAMES_SHOWN = 15


# --- load generator (runs in its own process: `bench_gateway.py --load-worker`, spec on stdin) ---------

async def create_payments(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec["count"]` POST /v1/payments with `spec["concurrency"]` in flight, starting at `spec["start_at"]`."""
    headers = {"Authorization": f"Bearer {spec['api_key']}"}
    body = {"product_id": spec["product_id"], "quantity": 1}
    latencies_ms: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    next_index = iter(range(spec["count"]))
    connector = aiohttp.TCPConnector(limit=spec["concurrency"])
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one_connection() -> None:
            for index in next_index:
                request_headers = headers
                if spec["idempotency_keys"]:
                    request_headers = dict(headers, **{"Idempotency-Key": f"{spec['key_prefix']}-{index}"})
                started = time.perf_counter()
                try:
                    async with session.post(spec["url"], json=body, headers=request_headers) as response:
                        await response.read()
                        if response.status != 201:
                            errors[f"http {response.status}"] += 1
                            continue
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    errors[type(error).__name__] += 1
                    continue
                latencies_ms.append((time.perf_counter() - started) * 1000)

        await asyncio.sleep(max(0.0, spec["start_at"] - time.time()))
        cpu_before, started_at = time.process_time(), time.time()
        await asyncio.gather(*(one_connection() for _ in range(spec["concurrency"])))
        finished_at = time.time()
    return {"latencies_ms": latencies_ms, "errors": dict(errors), "started_at": started_at,
            "finished_at": finished_at, "cpu_s": time.process_time() - cpu_before}


def load_worker_main() -> None:
    spec = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(create_payments(spec))))


# --- the local network ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Localnet:
    """What `paychain localnet up --gateway` started, as the benchmark uses it."""

    home: Path
    rpc_urls: tuple[str, ...]
    """The validators' JSON-RPC URLs, node0 first."""
    gateway_url: str
    gateway_pid: int
    receiver_url: str
    """The demo merchant's webhook receiver (its notifications at `/events`)."""
    node_pids: tuple[int, ...]
    api_key: str
    """The demo merchant's API key."""


def check_ports_free(base_port: int) -> None:
    for port in range(base_port, base_port + PORTS_USED):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no obstacle
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as error:
                raise RuntimeError(f"port {port} is taken ({error}); pick another --port") from error


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=env,
                               timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if completed.returncode != 0:
        raise RuntimeError(f"`{' '.join(args[:3])} …` failed: {completed.stderr.strip() or completed.stdout.strip()}")
    return completed.stdout


def start_localnet(home: Path, base_port: int) -> Localnet:
    check_ports_free(base_port)
    answer = json.loads(cli("paychain", "localnet", "up", "--home", str(home), "--validators", str(VALIDATORS),
                            "--base-port", str(base_port), "--gateway", "--fresh", "--json"))
    processes = {p.name: p for p in load_processes(home)}
    return Localnet(home, tuple(node["rpc_url"] for node in answer["nodes"]), answer["gateway"]["url"],
                    processes["gateway"].pid, answer["gateway"]["webhook_receiver"].rsplit("/", 1)[0],
                    tuple(node["pid"] for node in answer["nodes"]),
                    (home / "gateway" / "merchant_api_key").read_text().strip())


def stop_localnet(home: Path) -> None:
    if (home / "localnet.json").exists():
        print("stopping the local network: " + cli("paychain", "localnet", "down", "--home", str(home)).strip(),
              flush=True)


def add_catalog_product(net: Localnet) -> None:
    environment = dict(os.environ, PAYWALLET_DIR=str(net.home / "wallet"), PAYCHAIN_RPC=net.rpc_urls[0],
                       PAYWALLET_PASSWORD=DEV_PASSWORD)
    cli("paywallet", "catalog", "add", "--from", "merchant", "--product", PRODUCT_ID, "--name", PRODUCT_NAME,
        "--price", PRODUCT_PRICE, "--currency", CURRENCY, "--stock", str(PRODUCT_STOCK), "--limit",
        str(PRODUCT_PER_ORDER_LIMIT), "--wait", env=environment)


async def send_signed(network: Any, signer: crypto.KeyPair, bodies: list[Any], domain: crypto.SigningDomain,
                      min_fee: int) -> None:
    """Sign `bodies` from `signer` for the network `domain` with consecutive nonces, send them, wait until all
    committed successfully."""
    nonce = (await network.rpc("account_get", crypto.format_address(signer.address)))["pending_nonce"]
    raws = []
    for offset, body in enumerate(bodies):
        transaction = Transaction(domain.chain_id, signer.public_key, nonce + offset, CURRENCY, 0, body)
        fee = required_fee(transaction, min_fee)
        raws.append(sign_transaction(signer, domain, dataclasses.replace(transaction, fee=fee)))
    result = await network.rpc("tx_sendBatch", ["0x" + raw.hex() for raw in raws])
    if result["rejected"]:
        raise RuntimeError(f"setup transactions rejected: {result['results']}")
    receipts = await network.wait_receipts([r["hash"] for r in result["results"]], SETUP_TX_TIMEOUT_S)
    failed = [(r["code"], r["message"]) for r in receipts if not r["success"]]
    if failed:
        raise RuntimeError(f"setup transactions failed: {failed}")


async def register_buyers(network: Any, buyers: list[crypto.KeyPair]) -> None:
    """The dev gateway registers the benchmark buyers (KYC attestation), then alice funds them."""
    params = await network.rpc("chain_getParams")
    min_fee = next(asset["min_fee"] for asset in params["assets"] if asset["code"] == CURRENCY)
    kyc_hash = crypto.hash_bytes(b"bench_gateway buyer")
    domain = signing_domain_from_json(params)
    await send_signed(network, dev_keys("gateway"), [Register(b.address, int(Role.USER), kyc_hash) for b in buyers],
                      domain, min_fee)
    await send_signed(network, dev_keys("alice"), [Transfer(b.address, CURRENCY, BUYER_BALANCE_MINOR) for b in buyers],
                      domain, min_fee)


# --- gateway process figures ----------------------------------------------------------------------

def status_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/<pid>/status (VmRSS now, VmHWM peak) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def run_queue_wait_s(pid: int) -> float:
    """Seconds the process's threads were runnable but waiting for a CPU (/proc/<pid>/task/*/schedstat)."""
    waited_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            waited_ns += int((task / "schedstat").read_text().split()[1])
        except OSError:
            continue  # a thread that ended between the listing and the read
    return waited_ns / 1e9


def access_log_seconds(log: Path, offset: int, request_line: str) -> list[float]:
    """Request times as the gateway logs them (gateway/security.py AccessLogger, "… POST /v1/payments 201 12.3ms":
    from when aiohttp starts handling the request to the answer, so they include waits for an event loop busy with
    other requests) after byte `offset`."""
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    return [float(line.rsplit(" ", 1)[1].removesuffix("ms")) / 1000 for line in text.splitlines()
            if f" {request_line} 201 " in line]


def start_profiler(pid: int, output: Path) -> subprocess.Popen | None:
    py_spy = BIN / "py-spy"
    if not py_spy.exists():
        print("--profile: py-spy is not installed in the venv; no profile", flush=True)
        return None
    process = subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--rate", "250", "--idle", "--nonblocking",
                                "--format", "raw", "--output", str(output)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the load starts
    return process


def stop_profiler(process: subprocess.Popen, output: Path) -> dict[str, Any] | None:
    """Stop py-spy (it writes its file on SIGINT) and sum its collapsed stacks: each frame's share of the samples."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if not output.exists():
        print(f"--profile: py-spy wrote no profile (exit code {process.returncode})", flush=True)
        return None
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in output.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  for frame in stack.split(";")[1:] if frame]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            leaf[frames[-1]] += count
    trunk = max(inclusive.values(), default=0)  # the frames every sample passes through (main, run_forever …)
    share = {name: round(count / total, 3) for name, count in inclusive.most_common()
             if count < trunk}
    return {"samples": total, "leaf_share": {name: round(count / total, 3)
                                             for name, count in leaf.most_common(PROFILE_FRAMES_SHOWN)},
            "inclusive_share": dict(list(share.items())[:2 * PROFILE_FRAMES_SHOWN])}


# --- phase 1: payment creation --------------------------------------------------------------------

async def run_load_workers(net: Localnet, count: int, concurrency: int, clients: int, idempotency_keys: bool,
                           start_at: float) -> list[dict[str, Any]]:
    """Start `clients` load-generator processes that begin sending together at `start_at`; collect their results."""
    workers = []
    try:
        for index in range(clients):
            spec = {"url": net.gateway_url + "/v1/payments", "api_key": net.api_key, "product_id": PRODUCT_ID,
                    "count": count // clients + (index < count % clients),
                    "concurrency": concurrency // clients + (index < concurrency % clients),
                    "start_at": start_at, "idempotency_keys": idempotency_keys,
                    "key_prefix": f"bench-{secrets.token_hex(4)}-{index}"}
            process = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--load-worker", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            workers.append((process, json.dumps(spec).encode()))
        outputs = await asyncio.gather(*(process.communicate(spec) for process, spec in workers))
    finally:
        for process, _ in workers:
            if process.returncode is None:
                process.kill()
                await process.wait()
    if any(process.returncode != 0 for process, _ in workers):
        raise RuntimeError("a load-generator process failed (see its traceback above)")
    return [json.loads(stdout) for stdout, _ in outputs]


async def warm_up(session: aiohttp.ClientSession, net: Localnet) -> dict[str, Any]:
    """A few payments before measuring; returns the gateway's record of the last one (for the in-process check)."""
    headers = {"Authorization": f"Bearer {net.api_key}"}
    payment = {}
    for _ in range(WARMUP_PAYMENTS):
        async with session.post(net.gateway_url + "/v1/payments", json={"product_id": PRODUCT_ID, "quantity": 1},
                                headers=headers) as response:
            if response.status != 201:
                raise RuntimeError(f"warm-up payment refused: {response.status} {await response.text()}")
            payment = await response.json()
    return payment


async def measure_creation(args: argparse.Namespace, net: Localnet) -> dict[str, Any]:
    log = net.home / "gateway" / "gateway.log"
    log_offset = log.stat().st_size
    pids = [net.gateway_pid, *net.node_pids]
    profiler = start_profiler(net.gateway_pid, net.home / "gateway.pyspy") if args.profile else None
    try:
        start_at = time.time() + WORKER_START_DELAY_S
        load = asyncio.create_task(run_load_workers(net, args.payments, args.concurrency, args.clients,
                                                    args.idempotency_keys, start_at))
        await asyncio.sleep(start_at - time.time())
        cpu_before = [bench_node.cpu_seconds(pid) for pid in pids]
        waited_before = run_queue_wait_s(net.gateway_pid)
        busy_before, started = bench_orders.machine_busy_seconds(), time.perf_counter()
        results = await load
        elapsed_wall = time.perf_counter() - started
    finally:
        profile = stop_profiler(profiler, net.home / "gateway.pyspy") if profiler is not None else None
    cpu = [bench_node.cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before)]
    waited = run_queue_wait_s(net.gateway_pid) - waited_before
    busy_cores = (bench_orders.machine_busy_seconds() - busy_before) / elapsed_wall
    latencies = [value for result in results for value in result["latencies_ms"]]
    errors: collections.Counter[str] = collections.Counter()
    for result in results:
        errors.update(result["errors"])
    elapsed = max(r["finished_at"] for r in results) - min(r["started_at"] for r in results)
    client_cpu = sum(r["cpu_s"] for r in results)
    server_s = access_log_seconds(log, log_offset, "POST /v1/payments")
    own_cores = (sum(cpu) + client_cpu) / elapsed_wall
    return {
        "payments": args.payments, "concurrency": args.concurrency, "load_processes": args.clients,
        "idempotency_keys": args.idempotency_keys,
        "load_started_late_ms": round(max(0.0, max(r["started_at"] for r in results) - start_at) * 1000),
        "created": len(latencies), "errors": sum(errors.values()),
        "error_kinds": dict(errors), "elapsed_s": round(elapsed, 2),
        "payments_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": {"p50": round(statistics.median(latencies), 1),
                       "p99": round(bench_node.percentile(latencies, 0.99), 1), "max": round(max(latencies), 1)},
        "gateway_logged_request_ms": {"p50": round(statistics.median(server_s) * 1000, 2),
                                      "p99": round(bench_node.percentile(server_s, 0.99) * 1000, 2)}
        if server_s else None,
        "gateway_cpu_s": round(cpu[0], 2), "gateway_cpu_cores": round(cpu[0] / elapsed_wall, 2),
        "gateway_cpu_ms_per_payment": round(cpu[0] / max(1, len(latencies)) * 1000, 2),
        "gateway_time_share": {"on_cpu": round(cpu[0] / elapsed_wall, 2),
                               "waiting_for_cpu": round(waited / elapsed_wall, 2),
                               "blocked_or_idle": round(max(0.0, 1 - (cpu[0] + waited) / elapsed_wall), 2)},
        "gateway_rss_mb": status_mb(net.gateway_pid, "VmRSS"), "gateway_peak_rss_mb": status_mb(net.gateway_pid, "VmHWM"),
        "validators_cpu_s": round(sum(cpu[1:]), 2), "load_generator_cpu_s": round(client_cpu, 2),
        "machine_busy_cores": round(busy_cores, 2),
        "machine_busy_cores_other_processes": round(max(0.0, busy_cores - own_cores), 2),
        "profile": profile,
    }


# --- phase 2: pay to webhook ----------------------------------------------------------------------

class Shopper:
    """One buyer's browser: its own client address and CSRF cookie; pays one checkout at a time."""

    def __init__(self, index: int, keys: crypto.KeyPair, gateway_url: str, poll_interval_s: float) -> None:
        self.keys = keys
        self.gateway_url = gateway_url
        self.poll_interval_s = poll_interval_s
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{BUYER_ADDRESS_FIRST + index}", 0))
        self.session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                             timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        self.csrf_token: str | None = None

    async def close(self) -> None:
        await self.session.close()

    def _headers(self) -> dict[str, str]:
        return {CSRF_HEADER: self.csrf_token, "Cookie": f"{CSRF_COOKIE}={self.csrf_token}"} if self.csrf_token else {}

    async def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self.session.request(method, self.gateway_url + path, json=body, headers=self._headers()) as reply:
            answer = await reply.json()
            if reply.status != 200:
                raise RuntimeError(f"{method} {path}: {reply.status} {answer}")
            return answer

    async def open_page(self, payment_id: str) -> None:
        """GET /checkout/{id}, as the browser does; the gateway sets (or keeps) the CSRF cookie."""
        async with self.session.get(f"{self.gateway_url}/checkout/{payment_id}", headers=self._headers()) as reply:
            await reply.read()
            if reply.status != 200:
                raise RuntimeError(f"checkout page {payment_id}: {reply.status}")
            if CSRF_COOKIE in reply.cookies:
                self.csrf_token = reply.cookies[CSRF_COOKIE].value

    async def pay(self, payment_id: str) -> dict[str, Any]:
        """Click "pay": prepare, sign, submit; then poll like the page until the payment leaves `submitted`."""
        await self.open_page(payment_id)
        path = f"/api/checkout/{payment_id}"
        clicked_at = time.time()
        prepared = await self._json("POST", path + "/prepare",
                                    {"public_key": self.keys.public_key.hex(), "product_id": PRODUCT_ID})
        prepared_at = time.time()
        transaction = encoding.decode(Transaction, bytes.fromhex(prepared["payload"]), limits.tx_bytes_max)
        # What the page does with the prepared bytes: sign them for the network the gateway names.
        signed = sign_transaction(self.keys, signing_domain_from_json(prepared), transaction)
        submitted = await self._json("POST", path + "/submit", {"signed": signed.hex()})
        submitted_at = time.time()
        state = submitted["state"]
        while state in FOLLOWED_STATES:
            if time.time() - clicked_at > PAID_TIMEOUT_S:
                raise RuntimeError(f"checkout {payment_id} still {state} after {PAID_TIMEOUT_S:.0f} s")
            await asyncio.sleep(self.poll_interval_s)
            state = (await self._json("GET", path))["state"]
        return {"id": payment_id, "state": state, "tx_hash": submitted["tx_hash"], "clicked_at": clicked_at,
                "prepare_s": prepared_at - clicked_at, "submit_s": submitted_at - prepared_at,
                "paid_seen_s": time.time() - clicked_at}


async def create_checkouts(session: aiohttp.ClientSession, net: Localnet, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        async with session.post(net.gateway_url + "/v1/payments", json={"product_id": PRODUCT_ID, "quantity": 1},
                                headers={"Authorization": f"Bearer {net.api_key}"}) as response:
            ids.append((await response.json())["id"])
    return ids


async def wait_webhooks(session: aiohttp.ClientSession, net: Localnet, ids: set[str]) -> list[dict[str, Any]]:
    """The receiver's notifications about `ids`, once every one of them has its `payment.paid` (or the timeout)."""
    deadline = time.monotonic() + WEBHOOKS_TIMEOUT_S
    while True:
        async with session.get(net.receiver_url + "/events") as response:
            events = [e for e in await response.json() if e["data"]["id"] in ids]
        paid = {e["data"]["id"] for e in events if e["type"] == "payment.paid"}
        if paid >= ids or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.2)


async def gateway_records(session: aiohttp.ClientSession, net: Localnet, ids: list[str]) -> dict[str, dict]:
    records = {}
    for payment_id in ids:
        async with session.get(f"{net.gateway_url}/v1/payments/{payment_id}",
                               headers={"Authorization": f"Bearer {net.api_key}"}) as response:
            records[payment_id] = await response.json()
    return records


def seconds_summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"p50": round(statistics.median(values), 3), "p99": round(bench_node.percentile(values, 0.99), 3),
            "max": round(max(values), 3)}


def pay_figures(paid: list[dict[str, Any]], records: dict[str, dict], events: list[dict[str, Any]],
                block_seen_at: dict[int, float]) -> dict[str, Any]:
    """Per checkout: click -> webhook, click -> paid seen by polling, and the steps in between."""
    webhook_at: dict[str, float] = {}
    paid_notifications = collections.Counter(e["data"]["id"] for e in events if e["type"] == "payment.paid")
    for event in events:
        if event["type"] == "payment.paid":
            webhook_at.setdefault(event["data"]["id"], event["received_at"])
    steps: dict[str, list[float]] = collections.defaultdict(list)
    for item in paid:
        clicked, record = item["clicked_at"], records[item["id"]]
        recorded_paid = next((h["at"] for h in record["history"] if h["state"] == "paid"), None)
        steps["click_to_paid_polled_s"].append(item["paid_seen_s"])
        steps["prepare_s"].append(item["prepare_s"])
        steps["submit_s"].append(item["submit_s"])
        if item["id"] in webhook_at:
            steps["click_to_webhook_s"].append(webhook_at[item["id"]] - clicked)
        if record["height"] in block_seen_at:
            steps["click_to_block_seen_s"].append(block_seen_at[record["height"]] - clicked)
            if recorded_paid is not None:
                steps["block_seen_to_gateway_paid_s"].append(recorded_paid - block_seen_at[record["height"]])
        if recorded_paid is not None and item["id"] in webhook_at:
            steps["gateway_paid_to_webhook_s"].append(webhook_at[item["id"]] - recorded_paid)
    return {"paid": sum(1 for item in paid if item["state"] == "paid"),
            "not_paid": {item["id"]: item["state"] for item in paid if item["state"] != "paid"},
            "webhooks_missing": len(paid) - len(webhook_at),
            "duplicate_paid_webhooks": sum(count - 1 for count in paid_notifications.values()),
            **{name: seconds_summary(values) for name, values in steps.items()}}


async def measure_pay_to_webhook(args: argparse.Namespace, net: Localnet, session: aiohttp.ClientSession,
                                 network: Any, buyers: list[crypto.KeyPair]) -> dict[str, Any]:
    ids = await create_checkouts(session, net, args.paid)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for payment_id in ids:
        queue.put_nowait(payment_id)
    shoppers = [Shopper(i, keys, net.gateway_url, args.poll_interval_ms / 1000) for i, keys in enumerate(buyers)]
    paid: list[dict[str, Any]] = []

    async def shop(shopper: Shopper) -> None:
        while not queue.empty():
            paid.append(await shopper.pay(queue.get_nowait()))

    started = time.perf_counter()
    try:
        await asyncio.gather(*(shop(shopper) for shopper in shoppers))
    finally:
        for shopper in shoppers:
            await shopper.close()
    elapsed = time.perf_counter() - started
    events = await wait_webhooks(session, net, set(ids))
    records = await gateway_records(session, net, ids)
    wall_offset = time.time() - time.perf_counter()
    block_seen_at = {height: seen + wall_offset for height, (seen, _) in network.watcher.arrivals.items()}
    return {"checkouts": len(ids), "buyers": len(buyers), "elapsed_s": round(elapsed, 1),
            "poll_interval_ms": args.poll_interval_ms, **pay_figures(paid, records, events, block_seen_at)}


# --- where the time goes (in-process) -------------------------------------------------------------

async def create_timings(folder: Path, sample_payment: dict[str, Any]) -> dict[str, Any]:
    """Median µs of PaymentBook.create on LevelDB (one synced batch) and in memory, and of one synced write of
    one small record; interleaved, so that a disk shared with other processes slows all three alike."""
    leveldb_book = PaymentBook(GatewayStore.open(folder / "create"), {})
    memory_book = PaymentBook(GatewayStore.in_memory(), {})
    raw = LevelDbStore(folder / "raw")
    samples: dict[str, list[float]] = {"leveldb": [], "memory": [], "synced_write": []}
    try:
        for index in range(MICRO_WRITES):
            now = time.time()
            payment = dict(sample_payment, id=f"pm_bench{index}", created_at=now, expires_at=now + 900)
            for name, write in (("leveldb", lambda: leveldb_book.create(payment, None)),
                                ("memory", lambda: memory_book.create(payment, None)),
                                ("synced_write", lambda: raw.write([(b"k%d" % index, b"x" * 1_500)]))):
                started = time.perf_counter()
                result = write()
                if asyncio.iscoroutine(result):
                    await result  # PaymentBook.create: one group commit (one synced batch) on its own
                samples[name].append((time.perf_counter() - started) * 1e6)
    finally:
        leveldb_book.store.close()
        raw.close()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {"book_create_leveldb_us": round(medians["leveldb"]), "book_create_memory_us": round(medians["memory"]),
            "synced_write_us": round(medians["synced_write"]),
            "synced_write_us_p90": round(bench_node.percentile(samples["synced_write"], 0.9)),
            "payments_per_s_ceiling_one_synced_write_each": round(1e6 / medians["leveldb"])}


# --- the run --------------------------------------------------------------------------------------

async def run(args: argparse.Namespace, net: Localnet) -> dict[str, Any]:
    buyers = [dev_keys(f"bench-gateway-buyer-{i}") for i in range(args.buyers)]
    processes = [p for p in load_processes(net.home) if p.name.startswith("node")]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as session:
        network = bench_orders.Network(session, processes, b"", [])
        ready = asyncio.Event()
        watch = asyncio.create_task(network.watcher.run(session, net.rpc_urls[0].rsplit("/", 1)[0] + "/ws", ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            print(f"setup: catalog product {PRODUCT_ID!r}; {len(buyers)} buyers registered and funded", flush=True)
            await asyncio.to_thread(add_catalog_product, net)
            await register_buyers(network, buyers)
            sample = await warm_up(session, net)
            print(f"phase 1: {args.payments:,} POST /v1/payments, {args.concurrency} in flight from "
                  f"{args.clients} load process(es)", flush=True)
            creation = await measure_creation(args, net)
            print(f"phase 2: {args.paid} checkouts paid by {len(buyers)} buyers in parallel", flush=True)
            paying = await measure_pay_to_webhook(args, net, session, network, buyers)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
    print("in-process: PaymentBook.create on LevelDB and in memory…", flush=True)
    micro = await create_timings(net.home / "micro", sample)
    return {"creation": creation, "pay_to_webhook": paying, "in_process": micro}


def print_summary(result: dict[str, Any]) -> None:
    creation, paying, micro = result["creation"], result["pay_to_webhook"], result["in_process"]
    profile = creation.pop("profile")
    print("\n=== bench_gateway (one gateway process, 4 validators, this machine) ===")
    print(json.dumps(result, indent=2))
    if profile is not None:
        print(f"py-spy ({profile['samples']:,} samples of the gateway, idle included), most inclusive frames:")
        for name, share in profile["inclusive_share"].items():
            print(f"  {share:6.1%}  {name}")
        print("  where the samples ended (innermost frame): " + ", ".join(
            f"{name} {share:.1%}" for name, share in profile["leaf_share"].items()))
    handling = creation["gateway_logged_request_ms"] or {}
    print(f"creation: {creation['payments_per_s']:,} payments/s ({creation['created']:,} in "
          f"{creation['elapsed_s']} s, {creation['concurrency']} in flight), latency p50 "
          f"{creation['latency_ms']['p50']} ms p99 {creation['latency_ms']['p99']} ms, as logged by the gateway p50 "
          f"{handling.get('p50')} ms; errors {creation['errors']}; gateway CPU {creation['gateway_cpu_cores']} cores "
          f"({creation['gateway_cpu_ms_per_payment']} ms/payment), RSS {creation['gateway_rss_mb']} MiB "
          f"(peak {creation['gateway_peak_rss_mb']}); target >= {TARGET_PAYMENTS_PER_S}/s")
    share = creation["gateway_time_share"]
    print(f"gateway's time in phase 1: {share['on_cpu']:.0%} on a CPU, {share['waiting_for_cpu']:.0%} runnable but "
          f"waiting for one (other processes used {creation['machine_busy_cores_other_processes']} of "
          f"{os.cpu_count()} cores), {share['blocked_or_idle']:.0%} blocked (synced LevelDB writes) or idle")
    webhook, polled = paying.get("click_to_webhook_s") or {}, paying.get("click_to_paid_polled_s") or {}
    print(f"pay to webhook: p50 {webhook.get('p50')} s p99 {webhook.get('p99')} s max {webhook.get('max')} s "
          f"({paying['paid']}/{paying['checkouts']} paid, {paying['webhooks_missing']} webhooks missing, "
          f"{paying['duplicate_paid_webhooks']} duplicate payment.paid); paid seen by polling every "
          f"{paying['poll_interval_ms']} ms: p50 {polled.get('p50')} s p99 {polled.get('p99')} s; "
          f"target p50 <= {TARGET_PAY_TO_WEBHOOK_P50_S} s")
    print(f"in-process, after the run: one PaymentBook.create alone {micro['book_create_leveldb_us']} µs on LevelDB "
          f"(a group commit of one: one synced batch) vs {micro['book_create_memory_us']} µs in memory; one synced "
          f"write {micro['synced_write_us']} µs (p90 {micro['synced_write_us_p90']}). Without group commit that would "
          f"cap the event loop near {micro['payments_per_s_ceiling_one_synced_write_each']:,} payments/s with the "
          f"disk as it was then; under load, the requests of one event-loop turn share one synced write")
    print(f"load average (1, 5, 15 min) start {result['load_average_start']} end {result['load_average_end']}")
    print(json.dumps({"bench": "gateway", "payments_per_s": creation["payments_per_s"],
                      "create_latency_ms_p50": creation["latency_ms"]["p50"],
                      "create_latency_ms_p99": creation["latency_ms"]["p99"], "create_errors": creation["errors"],
                      "gateway_cpu_cores": creation["gateway_cpu_cores"], "gateway_rss_mb": creation["gateway_rss_mb"],
                      "pay_to_webhook_s": webhook, "pay_to_paid_polled_s": polled,
                      "duplicate_paid_webhooks": paying["duplicate_paid_webhooks"],
                      "load_average_1m_start_end": [result["load_average_start"][0], result["load_average_end"][0]]}))


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="folder for the local network (default: a temporary folder, "
                                                  "removed at the end); an existing network there is replaced")
    parser.add_argument("--keep", action="store_true", help="keep the home folder (logs, databases) at the end")
    parser.add_argument("--port", type=int, default=31757, help=f"base port; uses it and the next {PORTS_USED - 1}")
    parser.add_argument("--payments", type=int, default=5_000, help="POST /v1/payments in phase 1")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight in phase 1")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes in phase 1")
    parser.add_argument("--idempotency-keys", action="store_true", help="send an Idempotency-Key with each payment")
    parser.add_argument("--paid", type=int, default=50, help="checkouts paid in phase 2")
    parser.add_argument("--buyers", type=int, default=5, help=f"buyers paying in parallel in phase 2 "
                                                              f"(at most {BUYERS_MAX})")
    parser.add_argument("--poll-interval-ms", type=int, default=100,
                        help="how often a buyer polls its checkout (the checkout page polls every 500 ms)")
    parser.add_argument("--profile", action="store_true", help="sample the gateway with py-spy during phase 1")
    parser.add_argument("--time-cap-s", type=float, default=600.0, help="stop everything after this long")
    parser.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.paid <= PAID_MAX:
        parser.error(f"--paid: 1 to {PAID_MAX}")
    if not 1 <= args.buyers <= BUYERS_MAX:
        parser.error(f"--buyers: 1 to {BUYERS_MAX}")
    if args.clients < 1 or args.concurrency < args.clients or args.payments < args.clients:
        parser.error("--clients: at least 1, and at most --concurrency and --payments")
    return args


def main() -> None:
    args = parse_arguments()
    if args.load_worker:
        load_worker_main()
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # unwinds through the finally blocks below
    load_average_start = [round(value, 2) for value in os.getloadavg()]
    print(f"load average (1, 5, 15 min): {load_average_start}", flush=True)
    home = (args.home or Path(tempfile.mkdtemp(prefix="paychain-bench-gateway-"))).resolve()
    deadline = time.monotonic() + args.time_cap_s
    try:
        print(f"starting {VALIDATORS} validators, the gateway and the webhook receiver in {home}…", flush=True)
        net = start_localnet(home, args.port)
        result = asyncio.run(asyncio.wait_for(run(args, net), timeout=max(1.0, deadline - time.monotonic())))
    except asyncio.TimeoutError:
        sys.exit(f"stopped: the run took longer than --time-cap-s {args.time_cap_s:.0f}")
    except KeyboardInterrupt:
        sys.exit("interrupted")
    finally:
        stop_localnet(home)
        if args.home is None and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    result["load_average_start"] = load_average_start
    result["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    print_summary(result)


if __name__ == "__main__":
    main()
