"""One 4-validator local network with the payment gateway and the demo shop's webhook receiver, shared by the
gateway and browser tests of a run (starting one costs ~15 s). Its catalog: `tea` at 12.50 CNY and `tea-usd`
at 2.00 USD, at most 5 per order. Processes a test starts on it (a restarted node) go in `extra_processes`
and are stopped with the network."""

from __future__ import annotations

import subprocess
from typing import Any, Iterator

import pytest

from tests.gateway_client import Merchant
from tests.processes import gateway_of, localnet_down, validator_network_up

PER_ORDER_LIMIT = 5


@pytest.fixture(scope="session")
def shop(tmp_path_factory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("gateway") / "net"
    nodes = validator_network_up(home, 4, gateway=True)
    extra_processes: list[subprocess.Popen] = []
    try:
        network = nodes[1]  # node 0 is the one the failover test kills
        for product, price, currency in (("tea", "12.50", "CNY"), ("tea-usd", "2.00", "USD")):
            added = network.wallet("catalog", "add", "--from", "merchant", "--product", product, "--name",
                                   "Green tea", "--price", price, "--currency", currency, "--stock", "1000",
                                   "--limit", str(PER_ORDER_LIMIT), "--fee-asset", "CNY", "--wait", "--json")
            assert added.code == 0, added.stdout + added.stderr
        info = gateway_of(home)
        yield {"nodes": nodes, "network": network, "home": home, **info, "extra_processes": extra_processes,
               "merchant": Merchant(info["url"], info["api_key"])}
    finally:
        for process in extra_processes:
            process.terminate()
            process.wait(15)
        localnet_down(home)
