"""Gateway configuration (gateway/config.py): good documents load, and every rule refuses a bad one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import (NODES_PER_REGION_MAX, REGIONS_MAX, InvalidGatewayConfig, hash_api_key,
                            load_gateway_config, parse_gateway_config)
from node import crypto
from node.config import save_node_key
from node.localnet import dev_keys

GATEWAY_KEYS = dev_keys("test/gateway")
MERCHANT_KEYS = dev_keys("test/merchant")
OTHER_KEYS = dev_keys("test/other-merchant")
WEBHOOK_SECRET = "a-webhook-secret-of-32-characters"


def merchant_entry(keys: crypto.KeyPair = MERCHANT_KEYS, api_key: str = "merchant-api-key", **fields: Any) -> dict:
    entry = {"name": "Demo Tea Shop", "address": crypto.format_address(keys.address),
             "api_key_sha256": hash_api_key(api_key).hex()}
    entry.update(fields)
    return entry


def gateway_document(folder: Path, **gateway: Any) -> dict[str, Any]:
    """A valid document whose key file is written in `folder`; tests change one part of it."""
    save_node_key(folder / "gateway_key.json", GATEWAY_KEYS)
    return {"gateway": {"listen_port": 8080, "key_file": "gateway_key.json", **gateway},
            "regions": [{"name": "cn", "chain_id": "paychain-local",
                         "nodes": ["http://127.0.0.1:26657/rpc", "http://127.0.0.1:26659/rpc"]}],
            "merchants": [merchant_entry(webhook_url="https://shop.example/hook", webhook_secret=WEBHOOK_SECRET)]}


def refused(document: dict[str, Any], folder: Path, rule: str) -> None:
    """Parsing `document` fails with a message that contains `rule` (the field it names)."""
    with pytest.raises(InvalidGatewayConfig) as raised:
        parse_gateway_config(document, folder)
    assert rule in str(raised.value)


def refused_merchant(folder: Path, rule: str, **fields: Any) -> None:
    """A document whose one merchant has `fields` changed is refused with `rule`."""
    document = gateway_document(folder)
    document["merchants"] = [merchant_entry(**fields)]
    refused(document, folder, rule)


# --- good documents --------------------------------------------------------------------------------

def test_good_document_loads(tmp_path):
    config = parse_gateway_config(gateway_document(tmp_path, public_url="https://pay.example.com/",
                                                   data_dir="store", checkout_ttl_s=600,
                                                   recharge_auto_confirm=True), tmp_path)
    assert config.keys.address == GATEWAY_KEYS.address
    assert config.public_url == "https://pay.example.com"  # no trailing slash: links are built on it
    assert config.data_dir == tmp_path / "store"
    assert (config.checkout_ttl_s, config.recharge_auto_confirm, config.default_region) == (600, True, "cn")
    assert config.region("cn").nodes == ("http://127.0.0.1:26657/rpc", "http://127.0.0.1:26659/rpc")
    merchant = config.merchant_by_address(MERCHANT_KEYS.address)
    assert merchant is not None and merchant.address_text == crypto.format_address(MERCHANT_KEYS.address)
    assert merchant.webhook_url == "https://shop.example/hook" and merchant.webhook_secret == WEBHOOK_SECRET.encode()
    assert config.webhooks_to_private_addresses is False
    assert merchant.signing_keys is None
    assert config.merchants_by_key_hash[hash_api_key("merchant-api-key")] is merchant
    assert config.merchant_by_address(OTHER_KEYS.address) is None


def test_defaults(tmp_path):
    document = gateway_document(tmp_path)
    del document["gateway"]["listen_port"]
    config = parse_gateway_config(document, tmp_path)
    assert (config.listen_host, config.listen_port, config.public_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert (config.checkout_ttl_s, config.recharge_auto_confirm, config.data_dir) == (900, False, tmp_path / "data")
    assert config.webhook_retry_base_s == 2.0


def test_unknown_region_name_is_a_key_error(tmp_path):
    config = parse_gateway_config(gateway_document(tmp_path), tmp_path)
    with pytest.raises(KeyError):
        config.region("eu")


def test_merchant_without_webhook_has_no_secret(tmp_path):
    document = gateway_document(tmp_path)
    document["merchants"] = [merchant_entry(webhook_secret="short")]  # ignored without a webhook_url
    merchant = parse_gateway_config(document, tmp_path).merchants[0]
    assert merchant.webhook_url is None and merchant.webhook_secret is None


def test_signing_key_file_of_the_merchant_is_loaded(tmp_path):
    save_node_key(tmp_path / "merchant_key.json", MERCHANT_KEYS)
    document = gateway_document(tmp_path)
    document["merchants"] = [merchant_entry(signing_key_file="merchant_key.json")]
    assert parse_gateway_config(document, tmp_path).merchants[0].signing_keys.address == MERCHANT_KEYS.address


def test_several_regions_and_merchants(tmp_path):
    document = gateway_document(tmp_path, default_region="eu")
    document["regions"].append({"name": "eu", "chain_id": "paychain-eu", "nodes": ["https://eu.example.com/rpc"]})
    document["merchants"].append(merchant_entry(OTHER_KEYS, api_key="other-api-key"))
    config = parse_gateway_config(document, tmp_path)
    assert [region.name for region in config.regions] == ["cn", "eu"] and config.default_region == "eu"
    assert config.merchants_by_key_hash[hash_api_key("other-api-key")].address == OTHER_KEYS.address


def test_config_file_loads_with_paths_relative_to_it(tmp_path):
    folder = tmp_path / "gateway"
    folder.mkdir()
    save_node_key(folder / "gateway_key.json", GATEWAY_KEYS)
    (folder / "gateway.toml").write_text(
        '[gateway]\nkey_file = "gateway_key.json"\ndata_dir = "db"\n'
        '[[regions]]\nname = "cn"\nchain_id = "paychain-local"\nnodes = ["http://127.0.0.1:26657/rpc"]\n')
    config = load_gateway_config(folder / "gateway.toml")
    assert config.data_dir == folder / "db" and config.keys.address == GATEWAY_KEYS.address
    assert config.merchants == ()


def test_invalid_missing_config_file(tmp_path):
    with pytest.raises(InvalidGatewayConfig, match="no gateway config"):
        load_gateway_config(tmp_path / "gateway.toml")


def test_invalid_toml(tmp_path):
    (tmp_path / "gateway.toml").write_text("[gateway\n")
    with pytest.raises(InvalidGatewayConfig, match="not valid TOML"):
        load_gateway_config(tmp_path / "gateway.toml")


# --- every rule ------------------------------------------------------------------------------------

def test_invalid_no_regions(tmp_path):
    document = gateway_document(tmp_path)
    document["regions"] = []
    refused(document, tmp_path, "at least one [[regions]]")
    del document["regions"]
    refused(document, tmp_path, "at least one [[regions]]")


def test_invalid_too_many_regions(tmp_path):
    document = gateway_document(tmp_path)
    document["regions"] = [{"name": f"r{i}", "chain_id": "c", "nodes": ["http://127.0.0.1:1/rpc"]}
                           for i in range(REGIONS_MAX + 1)]
    refused(document, tmp_path, "regions: a list of at most")


def test_invalid_duplicate_region_names(tmp_path):
    document = gateway_document(tmp_path)
    document["regions"].append(dict(document["regions"][0], chain_id="another-chain"))
    refused(document, tmp_path, "regions: names must be distinct")


@pytest.mark.parametrize("nodes", [[], None, "http://127.0.0.1:26657/rpc",
                                   ["http://127.0.0.1:1/rpc"] * (NODES_PER_REGION_MAX + 1)])
def test_invalid_region_nodes(tmp_path, nodes):
    document = gateway_document(tmp_path)
    document["regions"][0]["nodes"] = nodes
    refused(document, tmp_path, "regions[0].nodes")


@pytest.mark.parametrize("field", ["name", "chain_id"])
def test_invalid_region_missing_text(tmp_path, field):
    document = gateway_document(tmp_path)
    document["regions"][0][field] = ""
    refused(document, tmp_path, f"regions[0].{field}")


def test_invalid_region_not_a_table(tmp_path):
    document = gateway_document(tmp_path)
    document["regions"] = ["cn"]
    refused(document, tmp_path, "regions[0]: must be a table")


@pytest.mark.parametrize("default_region", ["eu", "", 1])
def test_invalid_default_region(tmp_path, default_region):
    refused(gateway_document(tmp_path, default_region=default_region), tmp_path, "gateway.default_region")


@pytest.mark.parametrize("port", [-1, 65536, "8080", 8080.0, True])
def test_invalid_listen_port(tmp_path, port):
    refused(gateway_document(tmp_path, listen_port=port), tmp_path, "gateway.listen_port")


@pytest.mark.parametrize("port", [0, 65535])
def test_listen_port_bounds_are_accepted(tmp_path, port):
    assert parse_gateway_config(gateway_document(tmp_path, listen_port=port), tmp_path).listen_port == port


@pytest.mark.parametrize("ttl", [4, 604_801, "900", 900.5, False])
def test_invalid_checkout_ttl(tmp_path, ttl):
    refused(gateway_document(tmp_path, checkout_ttl_s=ttl), tmp_path, "gateway.checkout_ttl_s")


@pytest.mark.parametrize("ttl", [5, 604_800])
def test_checkout_ttl_bounds_are_accepted(tmp_path, ttl):
    assert parse_gateway_config(gateway_document(tmp_path, checkout_ttl_s=ttl), tmp_path).checkout_ttl_s == ttl


@pytest.mark.parametrize("retry_base_s", [0.04, 3601, "2", True, None])
def test_invalid_webhook_retry_base(tmp_path, retry_base_s):
    refused(gateway_document(tmp_path, webhook_retry_base_s=retry_base_s), tmp_path, "gateway.webhook_retry_base_s")


@pytest.mark.parametrize("retry_base_s", [0.05, 3600])
def test_webhook_retry_base_bounds_are_accepted(tmp_path, retry_base_s):
    config = parse_gateway_config(gateway_document(tmp_path, webhook_retry_base_s=retry_base_s), tmp_path)
    assert config.webhook_retry_base_s == retry_base_s and type(config.webhook_retry_base_s) is float


BAD_URLS = ["127.0.0.1:8080", "ftp://example.com/", "http://", "javascript:alert(1)", "", 8080]


@pytest.mark.parametrize("url", BAD_URLS)
def test_invalid_public_url(tmp_path, url):
    refused(gateway_document(tmp_path, public_url=url), tmp_path, "gateway.public_url")


@pytest.mark.parametrize("url", BAD_URLS)
def test_invalid_node_url(tmp_path, url):
    document = gateway_document(tmp_path)
    document["regions"][0]["nodes"] = ["http://127.0.0.1:26657/rpc", url]
    refused(document, tmp_path, "regions[0].nodes")


@pytest.mark.parametrize("url", BAD_URLS)
def test_invalid_webhook_url(tmp_path, url):
    refused_merchant(tmp_path, "merchants[0].webhook_url", webhook_url=url, webhook_secret=WEBHOOK_SECRET)


@pytest.mark.parametrize("secret", [None, "", "fifteen-chars!!", 1234567890123456789])
def test_invalid_webhook_url_without_a_long_secret(tmp_path, secret):
    refused_merchant(tmp_path, "merchants[0].webhook_secret: at least 16 characters",
                     webhook_url="http://127.0.0.1:9000/hook", webhook_secret=secret)


def test_webhook_secret_of_16_characters_is_accepted(tmp_path):
    document = gateway_document(tmp_path)
    document["merchants"] = [merchant_entry(webhook_url="https://shop.example/hook", webhook_secret="x" * 16)]
    assert parse_gateway_config(document, tmp_path).merchants[0].webhook_secret == b"x" * 16


@pytest.mark.parametrize("digest", [None, "", "ab" * 31, "ab" * 33, "zz" * 32, 1234, "ab" * 31 + "a"])
def test_invalid_api_key_sha256(tmp_path, digest):
    refused_merchant(tmp_path, "merchants[0].api_key_sha256: 64 hex digits", api_key_sha256=digest)


def test_invalid_duplicate_api_keys(tmp_path):
    document = gateway_document(tmp_path)
    document["merchants"].append(merchant_entry(OTHER_KEYS, api_key="merchant-api-key"))
    refused(document, tmp_path, "two merchants have the same API key")


def test_invalid_duplicate_merchant_addresses(tmp_path):
    document = gateway_document(tmp_path)
    document["merchants"].append(merchant_entry(api_key="second-api-key", webhook_url="http://127.0.0.1:9001/hook",
                                                webhook_secret=WEBHOOK_SECRET))
    refused(document, tmp_path, "merchants")


@pytest.mark.parametrize("address", [None, "", "pay1notanaddress", crypto.format_address(MERCHANT_KEYS.address)[:-1]])
def test_invalid_merchant_address(tmp_path, address):
    refused_merchant(tmp_path, "merchants[0].address", address=address)


def test_invalid_merchant_name(tmp_path):
    refused_merchant(tmp_path, "merchants[0].name", name="x" * 257)


def test_invalid_signing_key_file_of_another_address(tmp_path):
    save_node_key(tmp_path / "other_key.json", OTHER_KEYS)
    refused_merchant(tmp_path, "merchants[0].signing_key_file: the key is not the merchant's address",
                     signing_key_file="other_key.json")


def test_invalid_missing_signing_key_file(tmp_path):
    refused_merchant(tmp_path, "merchants[0].signing_key_file", signing_key_file="missing_key.json")


def test_invalid_missing_gateway_key_file(tmp_path):
    refused(gateway_document(tmp_path, key_file="missing_key.json"), tmp_path, "gateway.key_file")


def test_invalid_gateway_key_file_not_a_key(tmp_path):
    (tmp_path / "broken_key.json").write_text('{"seed": "00"}')
    refused(gateway_document(tmp_path, key_file="broken_key.json"), tmp_path, "gateway.key_file")


def test_invalid_gateway_section_not_a_table(tmp_path):
    document = gateway_document(tmp_path)
    document["gateway"] = "cn"
    refused(document, tmp_path, "gateway: must be a table")


@pytest.mark.parametrize("value", ["true", 1, None])
def test_invalid_recharge_auto_confirm(tmp_path, value):
    refused(gateway_document(tmp_path, recharge_auto_confirm=value), tmp_path, "gateway.recharge_auto_confirm")


@pytest.mark.parametrize("field", ["listen_host", "data_dir"])
def test_invalid_empty_text_fields(tmp_path, field):
    refused(gateway_document(tmp_path, **{field: ""}), tmp_path, f"gateway.{field}")


def test_trusted_proxies_are_ip_addresses(tmp_path):
    config = parse_gateway_config(gateway_document(tmp_path, trusted_proxies=["10.0.0.5", "::1"]), tmp_path)
    assert config.trusted_proxies == frozenset({"10.0.0.5", "::1"})
    assert parse_gateway_config(gateway_document(tmp_path), tmp_path).trusted_proxies == frozenset()


@pytest.mark.parametrize("value", ["10.0.0.5", ["proxy.example"], [5], ["10.0.0.0/8"]])
def test_invalid_trusted_proxies(tmp_path, value):
    refused(gateway_document(tmp_path, trusted_proxies=value), tmp_path, "gateway.trusted_proxies")


@pytest.mark.parametrize("token", ["short", 42, "x" * 31, "\u00e9" * 40, "a b\n" * 10])
def test_invalid_region_node_token(tmp_path, token):
    document = gateway_document(tmp_path)
    document["regions"][0]["node_token"] = token
    refused(document, tmp_path, "node_token")



@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/hook", "http://10.0.0.7/hook", "http://169.254.169.254/",
                                 "http://[::1]:9000/hook", "http://[::ffff:192.168.1.1]/", "http://0.0.0.0/"])
def test_invalid_private_webhook_target_unless_the_local_network_setting_is_on(tmp_path, url):
    refused_merchant(tmp_path, "not a public address", webhook_url=url, webhook_secret=WEBHOOK_SECRET)
    document = gateway_document(tmp_path, webhooks_to_private_addresses=True)
    document["merchants"] = [merchant_entry(webhook_url=url, webhook_secret=WEBHOOK_SECRET)]
    assert parse_gateway_config(document, tmp_path).merchants[0].webhook_url == url
