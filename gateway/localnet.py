"""The local network's gateway: its home folder (config, dev keys, the demo merchant's API key and webhook
secret) and its two processes (the gateway and the demo merchant's webhook receiver).

    <home>/gateway/config.toml          one region "local" with every validator's RPC endpoint
    <home>/gateway/gateway_key.json     the dev gateway account's key (attestations, recharge posting)
    <home>/gateway/merchant_key.json    the dev merchant's key, delegated for ship / cancel / refund
    <home>/gateway/merchant_api_key     the demo merchant's API key (mode 0600)
    <home>/gateway/webhook_secret       the demo merchant's webhook secret (mode 0600)
    <home>/gateway/gateway.log, receiver.log
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from gateway.config import hash_api_key, load_gateway_config
from node import crypto
from node.config import save_node_key
from node.localnet import GATEWAY_TOKEN_FILE, NodeProcess, dev_keys, write_secret

DEMO_MERCHANT_NAME = "Demo Tea Shop"
REGION = "local"


def create_gateway_home(home: Path, chain_id: str, node_rpc_urls: list[str], port: int, receiver_port: int) -> Path:
    folder = home / "gateway"
    folder.mkdir(parents=True, exist_ok=True)
    save_node_key(folder / "gateway_key.json", dev_keys("gateway"))
    save_node_key(folder / "merchant_key.json", dev_keys("merchant"))
    api_key = "sk_dev_" + secrets.token_urlsafe(24)
    webhook_secret = secrets.token_urlsafe(32)
    write_secret(folder / "merchant_api_key", api_key)
    write_secret(folder / "webhook_secret", webhook_secret)
    nodes = ", ".join(f'"{url}"' for url in node_rpc_urls)
    token_file = home / GATEWAY_TOKEN_FILE
    node_token = f'node_token = "{token_file.read_text().strip()}"\n' if token_file.exists() else ""
    config = f'''# The local network's payment gateway (dev keys: never for production).
[gateway]
listen_host = "127.0.0.1"
listen_port = {port}
public_url = "http://127.0.0.1:{port}"
data_dir = "data"
key_file = "gateway_key.json"
default_region = "{REGION}"
checkout_ttl_s = 900
recharge_auto_confirm = true   # no bank on a local network: every recharge request is posted at once
webhooks_to_private_addresses = true   # the demo receiver listens on 127.0.0.1

[[regions]]
name = "{REGION}"
chain_id = "{chain_id}"
nodes = [{nodes}]
explorer_url = "{node_rpc_urls[0].rsplit("/", 1)[0]}"
{node_token}
[[merchants]]
name = "{DEMO_MERCHANT_NAME}"
address = "{crypto.format_address(dev_keys("merchant").address)}"
api_key_sha256 = "{hash_api_key(api_key).hex()}"
webhook_url = "http://127.0.0.1:{receiver_port}/webhook"
webhook_secret = "{webhook_secret}"
signing_key_file = "merchant_key.json"
'''
    (folder / "config.toml").write_text(config)
    return folder


def ports_of(folder: Path) -> tuple[int, int]:
    """(gateway port, webhook receiver port) from the gateway's config."""
    config = load_gateway_config(folder / "config.toml")
    return config.listen_port, urlparse(config.merchants[0].webhook_url).port


def _start(folder: Path, name: str, arguments: list[str], identity: Path, log_name: str, url: str) -> NodeProcess:
    """Start `paychain gateway …`; `identity` is a path among its arguments that `localnet down` recognises it by."""
    assert str(identity) in arguments
    log = open(folder / log_name, "ab")
    process = subprocess.Popen([sys.executable, "-m", "node.cli", "gateway", *arguments], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    return NodeProcess(name, identity, process.pid, url)


def start_gateway(folder: Path, port: int) -> NodeProcess:
    config = folder / "config.toml"
    return _start(folder, "gateway", ["run", "--config", str(config)], config, "gateway.log",
                  f"http://127.0.0.1:{port}/")


def start_receiver(folder: Path, port: int) -> NodeProcess:
    secret = folder / "webhook_secret"
    return _start(folder, "webhook-receiver", ["demo-receiver", "--port", str(port), "--secret-file", str(secret)],
                  secret, "receiver.log", f"http://127.0.0.1:{port}/")
