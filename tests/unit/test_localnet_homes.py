"""The local network's homes: every node keeps its gateway slots for the very gateway localnet writes."""

from __future__ import annotations

from gateway.config import load_gateway_config
from gateway.localnet import create_gateway_home
from node.config import load_config
from node.localnet import create_homes, rpc_port_of


def test_the_local_gateway_presents_a_token_every_node_keeps_slots_for(tmp_path):
    node_homes = create_homes(tmp_path, validators=4, base_port=36000, write_wallets=False, full_nodes=1)
    urls = [f"http://127.0.0.1:{rpc_port_of(36000, index)}/rpc" for index in range(4)]
    folder = create_gateway_home(tmp_path, "paychain-local", urls, port=36100, receiver_port=36101)
    token = load_gateway_config(folder / "config.toml").regions[0].node_token
    assert token is not None and len(token) >= 32
    for node_home in node_homes:
        config = load_config(node_home)
        assert config.gateway_tokens == (token,)
        assert config.admin_token != token
    assert (tmp_path / "gateway_node_token").stat().st_mode & 0o077 == 0
