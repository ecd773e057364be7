#!/usr/bin/env python3
"""Demo payment on a running local network, through `paywallet` only, printing each step."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from node.localnet import DEV_PASSWORD, load_processes

BIN = Path(sys.executable).parent


def wallet(*args: str, env: dict[str, str]) -> dict:
    command = [str(BIN / "paywallet"), *args, "--json"]
    print("  $ paywallet " + " ".join(args))
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        print(completed.stdout + completed.stderr, file=sys.stderr)
        raise SystemExit(f"demo step failed with exit code {completed.returncode}")
    return json.loads(completed.stdout)


def show_balances(env: dict[str, str], *names: str) -> None:
    for name in names:
        account = wallet("balance", name, env=env)
        balances = ", ".join(f"{amount / 100:,.2f} {asset}" for asset, amount in sorted(account["balances"].items()))
        print(f"    {name:<8} {balances}")


def shop(env: dict[str, str]) -> str:
    """The order flow of the system orders contract: catalog, pay into escrow, ship, confirm; the product id."""
    product = f"tea-{os.getpid()}"  # the demo may run again on the same chain
    print(f"\n== 6. the merchant lists a product ({product}) in its on-chain catalog")
    wallet("catalog", "add", "--from", "merchant", "--product", product, "--name", "Green tea", "--price", "12.50",
           "--currency", "CNY", "--stock", "100", "--limit", "5", "--wait", env=env)
    print("\n== 7. alice buys two: 25.00 CNY wait in escrow")
    order = wallet("pay", "--from", "alice", "--merchant", "merchant", "--product", product, "--quantity", "2",
                   "--wait", env=env)
    print(f"    order {order['order_id']} created in block {order['height']}")
    print("\n== 8. the merchant ships, alice confirms receipt: the merchant is paid, 1% fee to the fee account")
    wallet("ship", order["order_id"], "--from", "merchant", "--tracking", "SF-DEMO-1", "--wait", env=env)
    wallet("confirm", order["order_id"], "--from", "alice", "--wait", env=env)
    final = wallet("order", order["order_id"], env=env)
    print(f"    order state: {final['state']}")
    show_balances(env, "alice", "merchant")
    return product


def checkout(home: Path, product: str) -> dict:
    """The merchant asks the gateway for a payment of one product: the answer carries the checkout link."""
    processes = {p.name: p for p in load_processes(home)}
    if "gateway" not in processes:
        return {}
    gateway_url = processes["gateway"].rpc_url.rstrip("/")
    api_key = (home / "gateway" / "merchant_api_key").read_text().strip()
    print("\n== 9. the shop asks the payment gateway for a checkout (merchant REST API, Idempotency-Key)")
    print(f"  $ curl -X POST {gateway_url}/v1/payments -H 'Authorization: Bearer <key>' "
          f"-H 'Idempotency-Key: demo-{os.getpid()}' -d '{{\"product_id\": \"{product}\", \"quantity\": 1}}'")
    request = urllib.request.Request(gateway_url + "/v1/payments", method="POST",
                                     data=json.dumps({"product_id": product, "quantity": 1}).encode(),
                                     headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                                              "Idempotency-Key": f"demo-{os.getpid()}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        payment = json.loads(response.read())
    print(f"    payment {payment['id']}: {payment['state']}, {payment['total'] / 100:.2f} {payment['currency']}")
    return {"gateway_url": gateway_url, "payment": payment}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=Path("localnet"))
    home = parser.parse_args().home.resolve()
    nodes = [p for p in load_processes(home) if p.name.startswith(("node", "full"))]
    if not nodes:
        raise SystemExit(f"no local network in {home}: run `paychain localnet up --home {home}` first")
    env = dict(os.environ, PAYWALLET_DIR=str(home / "wallet"), PAYCHAIN_RPC=nodes[0].rpc_url,
               PAYWALLET_PASSWORD=DEV_PASSWORD)
    status = subprocess.run([str(BIN / "paychain"), "status", "--rpc", nodes[0].rpc_url, "--json"],
                            capture_output=True, text=True, check=True)
    info = json.loads(status.stdout)
    print(f"\n== chain {info['chain_id']} at height {info['height']}, node {nodes[0].rpc_url}")
    print("\n== 1. balances before")
    show_balances(env, "alice", "bob")
    print("\n== 2. alice pays bob 12.50 CNY and waits for finality")
    result = wallet("transfer", "--from", "alice", "--to", "bob", "--amount", "12.50", "--asset", "CNY", "--wait",
                    env=env)
    print(f"    committed in block {result['height']}: {result['receipt']['events'][0]}")
    print("\n== 3. alice asks the gateway to recharge 100.00 USD (off-chain bank transfer 'demo-001')")
    request = wallet("recharge", "--from", "alice", "--gateway", "gateway", "--amount", "100", "--asset", "USD",
                     "--reference", "demo-001", "--wait", env=env)
    print(f"    request {request['hash']} committed in block {request['height']}")
    print("\n== 4. the gateway sees the funds arrive and posts the recharge")
    posted = wallet("recharge-post", request["hash"], "--from", "gateway", "--reference", "bank-ok-001", "--wait",
                    env=env)
    print(f"    posted in block {posted['height']}: {posted['receipt']['events'][0]}")
    print("\n== 5. balances after (fees of 0.01 go to the fee account)")
    show_balances(env, "alice", "bob")
    product = shop(env)
    gateway = checkout(home, product)
    blocks = json.loads(subprocess.run([str(BIN / "paychain"), "status", "--rpc", nodes[0].rpc_url, "--json"],
                                       capture_output=True, text=True, check=True).stdout)
    print(f"\n== chain is at height {blocks['height']}, state root {blocks['state_root'][:18]}…")
    dashboard = nodes[0].rpc_url.rsplit("/", 1)[0] + "/"
    print(f"\nThe network keeps running.\n\n  Dashboard and explorer:  {dashboard}")
    if gateway:
        print(f"  Checkout link:           {gateway['payment']['checkout_url']}\n"
              f"      pay as alice: choose the keystore file {home / 'wallet' / 'alice.json'}\n"
              f"      and type the payment password {DEV_PASSWORD}\n"
              f"  Webhooks the shop gets:  tail -f {home / 'gateway' / 'receiver.log'}\n"
              f"  Recharge page:           {gateway['gateway_url']}/recharge\n"
              f"  Merchant analytics:      {gateway['gateway_url']}/merchant  (API key in "
              f"{home / 'gateway' / 'merchant_api_key'})\n"
              f"  Merchant API document:   {gateway['gateway_url']}/openapi.json")
    print(f"\nTry the wallet:\n  export PAYWALLET_DIR={home / 'wallet'} PAYCHAIN_RPC={nodes[0].rpc_url}"
          f"\n  .venv/bin/paywallet balance alice\n  .venv/bin/paywallet history alice"
          f"\n  .venv/bin/paywallet orders alice"
          f"\nStop it with:  .venv/bin/paychain localnet down --home {home}")


if __name__ == "__main__":
    main()
