"""The gateway's configuration: a TOML file, checked on load into frozen dataclasses.

    [gateway]
    listen_host = "127.0.0.1"
    listen_port = 8080
    public_url = "http://127.0.0.1:8080"     # how shoppers reach the checkout pages
    data_dir = "data"                        # LevelDB folder, relative to the config file
    key_file = "gateway_key.json"            # the gateway account's key (attestations, recharge posting)
    default_region = "cn"
    checkout_ttl_s = 900
    recharge_auto_confirm = false            # true on a local network: no bank, post every request at once
    webhook_retry_base_s = 2.0               # first retry after this, doubling per attempt
    trusted_proxies = ["10.0.0.5"]           # reverse proxies whose X-Forwarded-For / -Proto are believed
    webhooks_to_private_addresses = false    # true on a local network: webhooks may go to 127.0.0.1 and private nets

    [[regions]]                              # one chain per region, several nodes each (failover)
    name = "cn"
    chain_id = "paychain-local"
    nodes = ["http://127.0.0.1:26657/rpc", "http://127.0.0.1:26659/rpc"]
    explorer_url = "https://explorer.example"  # optional: the network's public dashboard, linked from checkouts
    node_token = "…"                         # optional: one of the nodes' gateway_tokens (slots kept for gateways)

    [[merchants]]
    name = "Demo Tea Shop"
    address = "pay1…"
    api_key_sha256 = "…"                     # hex SHA-256 of the merchant's API key (the key itself is not stored)
    webhook_url = "https://shop.example/paychain-hook"
    webhook_secret = "…"                     # HMAC-SHA256 key for webhook signatures
    signing_key_file = "merchant_key.json"   # optional: lets the gateway ship, cancel and refund for the merchant

The gateway never holds a shopper's key: shoppers sign in their browser.
"""

from __future__ import annotations

import hashlib
import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gateway.egress import literal_refusal
from node import crypto
from node.config import load_node_key

REGIONS_MAX = 16
NODES_PER_REGION_MAX = 16
MERCHANTS_MAX = 10_000


class InvalidGatewayConfig(ValueError):
    """The configuration file cannot be used; the message names the field and the rule."""


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    chain_id: str
    nodes: tuple[str, ...]
    """JSON-RPC URLs (`…/rpc`) of the region's nodes, tried in order; a node that stops answering is skipped."""
    explorer_url: str | None = None
    """The network's public dashboard (a node's `/`), linked from the checkout page; internal node URLs are
    never shown to shoppers."""
    node_token: str | None = None
    """The token the region's nodes list in their `gateway_tokens`: presented on the orders feed, it lets
    the gateway use the WebSocket slots nodes keep for gateways."""


@dataclass(frozen=True, slots=True)
class Merchant:
    name: str
    address: bytes
    api_key_sha256: bytes
    webhook_url: str | None
    webhook_secret: bytes | None
    signing_keys: crypto.KeyPair | None
    """The merchant's key if it delegated shipping, canceling and refunding to the gateway."""

    @property
    def address_text(self) -> str:
        return crypto.format_address(self.address)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    listen_host: str
    listen_port: int
    public_url: str
    data_dir: Path
    keys: crypto.KeyPair
    default_region: str
    checkout_ttl_s: int
    recharge_auto_confirm: bool
    webhook_retry_base_s: float
    trusted_proxies: frozenset[str]
    """Addresses of reverse proxies (TLS terminators) whose X-Forwarded-For and X-Forwarded-Proto headers are
    believed; from anyone else those headers are ignored."""
    webhooks_to_private_addresses: bool
    """Let webhooks reach loopback, private and link-local addresses (a local network's demo receiver);
    off, a webhook target must be a public address after resolution (gateway/egress.py)."""
    regions: tuple[Region, ...]
    merchants: tuple[Merchant, ...]
    merchants_by_key_hash: dict[bytes, Merchant]

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    def merchant_by_address(self, address: bytes) -> Merchant | None:
        for merchant in self.merchants:
            if merchant.address == address:
                return merchant
        return None


def hash_api_key(api_key: str) -> bytes:
    """The stored form of an API key. A header with bytes that are not UTF-8 reaches here as lone surrogates:
    hashed as the bytes received, it matches no key (never an error)."""
    return hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).digest()


def load_gateway_config(path: Path) -> GatewayConfig:
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError as error:
        raise InvalidGatewayConfig(f"no gateway config at {path}") from error
    except tomllib.TOMLDecodeError as error:
        raise InvalidGatewayConfig(f"{path} is not valid TOML: {error}") from error
    return parse_gateway_config(document, path.parent)


def parse_gateway_config(document: dict[str, Any], folder: Path) -> GatewayConfig:
    section = _table(document.get("gateway", {}), "gateway")
    regions = tuple(_region(entry, index) for index, entry in enumerate(_list(document, "regions", REGIONS_MAX)))
    if not regions:
        raise InvalidGatewayConfig("regions: at least one [[regions]] entry is needed")
    names = [region.name for region in regions]
    if len(set(names)) != len(names):
        raise InvalidGatewayConfig("regions: names must be distinct")
    merchants = tuple(_merchant(entry, index, folder)
                      for index, entry in enumerate(_list(document, "merchants", MERCHANTS_MAX)))
    if len({m.api_key_sha256 for m in merchants}) != len(merchants):
        raise InvalidGatewayConfig("merchants: two merchants have the same API key")
    if len({m.address for m in merchants}) != len(merchants):
        raise InvalidGatewayConfig("merchants: two entries have the same address (one entry per merchant)")
    private_webhooks = _bool(section.get("webhooks_to_private_addresses", False),
                             "gateway.webhooks_to_private_addresses")
    for merchant in merchants:
        refusal = None if private_webhooks or merchant.webhook_url is None else literal_refusal(merchant.webhook_url)
        if refusal is not None:
            raise InvalidGatewayConfig(f"merchant {merchant.name!r}: webhook_url: {refusal} (set "
                                       "gateway.webhooks_to_private_addresses on a local network)")
    default_region = _text(section.get("default_region", regions[0].name), "gateway.default_region")
    if default_region not in names:
        raise InvalidGatewayConfig(f"gateway.default_region: {default_region!r} is not one of the regions {names}")
    port = section.get("listen_port", 8080)
    if type(port) is not int or not 0 <= port <= 65535:
        raise InvalidGatewayConfig("gateway.listen_port: must be an integer port (0 picks a free one)")
    ttl = section.get("checkout_ttl_s", 900)
    if type(ttl) is not int or not 5 <= ttl <= 7 * 24 * 3600:
        raise InvalidGatewayConfig("gateway.checkout_ttl_s: must be an integer from 5 to 604800")
    retry_base_s = section.get("webhook_retry_base_s", 2.0)
    if type(retry_base_s) not in (int, float) or not 0.05 <= retry_base_s <= 3600:
        raise InvalidGatewayConfig("gateway.webhook_retry_base_s: a number of seconds from 0.05 to 3600")
    public_url = _url(section.get("public_url", f"http://127.0.0.1:{port}"), "gateway.public_url")
    try:
        keys = load_node_key(folder / _text(section.get("key_file", "gateway_key.json"), "gateway.key_file"))
    except Exception as error:
        raise InvalidGatewayConfig(f"gateway.key_file: {error}") from error
    return GatewayConfig(
        listen_host=_text(section.get("listen_host", "127.0.0.1"), "gateway.listen_host"),
        listen_port=port, public_url=public_url.rstrip("/"),
        data_dir=folder / _text(section.get("data_dir", "data"), "gateway.data_dir"),
        keys=keys, default_region=default_region, checkout_ttl_s=ttl,
        recharge_auto_confirm=_bool(section.get("recharge_auto_confirm", False), "gateway.recharge_auto_confirm"),
        webhook_retry_base_s=float(retry_base_s),
        trusted_proxies=_addresses(section.get("trusted_proxies", []), "gateway.trusted_proxies"),
        webhooks_to_private_addresses=private_webhooks,
        regions=regions, merchants=merchants,
        merchants_by_key_hash={merchant.api_key_sha256: merchant for merchant in merchants})


def _region(entry: Any, index: int) -> Region:
    where = f"regions[{index}]"
    entry = _table(entry, where)
    nodes = entry.get("nodes")
    if not isinstance(nodes, list) or not 1 <= len(nodes) <= NODES_PER_REGION_MAX:
        raise InvalidGatewayConfig(f"{where}.nodes: a list of 1 to {NODES_PER_REGION_MAX} node RPC URLs")
    explorer = entry.get("explorer_url")
    token = entry.get("node_token")
    if token is not None and (not isinstance(token, str) or len(token) < 32 or not token.isascii()
                              or not token.isprintable()):
        raise InvalidGatewayConfig(f"{where}.node_token: at least 32 printable ASCII characters")
    return Region(_text(entry.get("name"), f"{where}.name"), _text(entry.get("chain_id"), f"{where}.chain_id"),
                  tuple(_url(node, f"{where}.nodes") for node in nodes),
                  None if explorer is None else _url(explorer, f"{where}.explorer_url").rstrip("/"), token)


def _merchant(entry: Any, index: int, folder: Path) -> Merchant:
    where = f"merchants[{index}]"
    entry = _table(entry, where)
    try:
        address = crypto.parse_address(_text(entry.get("address"), f"{where}.address"))
    except ValueError as error:
        raise InvalidGatewayConfig(f"{where}.address: {error}") from error
    digest = _hex(entry.get("api_key_sha256"), f"{where}.api_key_sha256", 32)
    webhook_url = entry.get("webhook_url")
    secret = entry.get("webhook_secret")
    if webhook_url is not None:
        webhook_url = _url(webhook_url, f"{where}.webhook_url")
        if not isinstance(secret, str) or len(secret) < 16:
            raise InvalidGatewayConfig(f"{where}.webhook_secret: at least 16 characters when a webhook_url is set")
    signing_keys = None
    if entry.get("signing_key_file") is not None:
        try:
            signing_keys = load_node_key(folder / _text(entry["signing_key_file"], f"{where}.signing_key_file"))
        except Exception as error:
            raise InvalidGatewayConfig(f"{where}.signing_key_file: {error}") from error
        if signing_keys.address != address:
            raise InvalidGatewayConfig(f"{where}.signing_key_file: the key is not the merchant's address")
    return Merchant(_text(entry.get("name"), f"{where}.name"), address, digest, webhook_url,
                    secret.encode() if webhook_url is not None else None, signing_keys)


def _addresses(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or len(value) > 64 or not all(isinstance(item, str) for item in value):
        raise InvalidGatewayConfig(f"{where}: a list of at most 64 IP addresses (as text)")
    try:
        return frozenset(str(ipaddress.ip_address(item)) for item in value)
    except (TypeError, ValueError) as error:
        raise InvalidGatewayConfig(f"{where}: {error}") from error


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidGatewayConfig(f"{where}: must be a table")
    return value


def _list(document: dict[str, Any], name: str, limit: int) -> list[Any]:
    value = document.get(name, [])
    if not isinstance(value, list) or len(value) > limit:
        raise InvalidGatewayConfig(f"{name}: a list of at most {limit} [[{name}]] tables")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidGatewayConfig(f"{where}: a non-empty text of at most 256 characters is required")
    return value


def _bool(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise InvalidGatewayConfig(f"{where}: must be true or false")
    return value


def _hex(value: Any, where: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise InvalidGatewayConfig(f"{where}: {2 * size} hex digits are required")
    return raw


def _url(value: Any, where: str) -> str:
    text = _text(value, where)
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidGatewayConfig(f"{where}: {text!r} is not an http(s) URL")
    return text
