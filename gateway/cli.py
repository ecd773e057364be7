"""`paychain gateway run | api-key | demo-receiver`."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import click


@click.group("gateway")
def gateway_group() -> None:
    """The payment gateway: merchant API, checkout pages, webhooks."""


@gateway_group.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The gateway's TOML config (see gateway/config.py for every field).")
def run(config_path: Path) -> None:
    """Run the gateway until SIGTERM or Ctrl-C."""
    from gateway.config import InvalidGatewayConfig, load_gateway_config
    from gateway.server import run_gateway
    try:
        load_gateway_config(config_path)
    except InvalidGatewayConfig as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    run_gateway(config_path)


@gateway_group.command("api-key")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def api_key(as_json: bool) -> None:
    """Make a new merchant API key: give the key to the merchant, put its SHA-256 in the config."""
    from gateway.config import hash_api_key
    key = "sk_" + secrets.token_urlsafe(32)
    data = {"api_key": key, "api_key_sha256": hash_api_key(key).hex()}
    if as_json:
        click.echo(json.dumps(data))
    else:
        click.echo(f"api key (give to the merchant, shown once): {key}\n"
                   f"api_key_sha256 (for the gateway config):    {data['api_key_sha256']}")


@gateway_group.command("demo-receiver")
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="Port on 127.0.0.1.")
@click.option("--secret-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="File holding the webhook secret.")
def demo_receiver(port: int, secret_file: Path) -> None:
    """A merchant's webhook receiver for demos: verifies signatures and logs each notification."""
    from gateway.demo_receiver import run_receiver
    run_receiver(port, secret_file)
