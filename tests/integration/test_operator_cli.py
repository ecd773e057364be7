"""The operator path without localnet: keys -> genesis -> config -> `paychain run`."""

from __future__ import annotations

import json
import stat

import pytest

from node.config import write_config
from tests.processes import paychain, start_node
from tests.support import free_port
from wallet_cli.rpc_client import RpcClient

pytestmark = pytest.mark.slow


def test_generate_keys_init_genesis_and_run_a_node(tmp_path) -> None:
    home = tmp_path / "node"
    home.mkdir()
    generated = paychain("keys", "generate", "--out", str(home / "validator_key.json"), "--json")
    assert generated.code == 0, generated.stderr
    assert stat.S_IMODE((home / "validator_key.json").stat().st_mode) == 0o600
    validator = generated.json()
    again = paychain("keys", "generate", "--out", str(home / "validator_key.json"))
    assert again.code == 1 and "exists" in again.stderr  # never overwrite a key silently
    shown = paychain("keys", "show", str(home / "validator_key.json"), "--json").json()
    assert shown == {"address": validator["address"], "public_key": validator["public_key"]}

    user = paychain("keys", "generate", "--out", str(tmp_path / "user.json"), "--json").json()
    created = paychain("genesis", "init", "--out", str(home / "genesis.json"), "--chain-id", "ops-test",
                       "--validator", f"v0:merchant:{home / 'validator_key.json'}", "--asset", "CNY:2:1",
                       "--fee-account", validator["address"], "--account", f"{user['address']}:user:CNY=500",
                       "--json")
    assert created.code == 0, created.stderr
    document = json.loads((home / "genesis.json").read_text())
    assert document["validators"][0]["public_key"] == validator["public_key"]
    assert paychain("genesis", "check", str(home / "genesis.json")).code == 0

    port = free_port()
    write_config(home, rpc_port=port, p2p_port=free_port())
    url = f"http://127.0.0.1:{port}/rpc"
    process = start_node(home, url)
    try:
        client = RpcClient(url)
        assert client.call("node_status")["chain_id"] == "ops-test"
        assert client.call("account_get", user["address"])["balances"] == {"CNY": 500}
        assert client.call("chain_getValidators")[0]["address"] == validator["address"]
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0  # SIGTERM is a clean shutdown


@pytest.mark.parametrize("args, fragment", [
    (("--asset", "cny:2:1"), "assets[0].code"),
    (("--asset", "CNY:2"), "CODE:DECIMALS:MIN_FEE"),
    (("--asset", "CNY:2:1", "--fee-account", "pay1nottanaddress"), "fee-account"),
])
def test_invalid_genesis_input_is_refused(tmp_path, args, fragment) -> None:
    key = paychain("keys", "generate", "--out", str(tmp_path / "v.json"), "--json").json()
    base = ["genesis", "init", "--out", str(tmp_path / "genesis.json"), "--chain-id", "ops-test",
            "--validator", f"v0:merchant:{tmp_path / 'v.json'}"]
    if "--fee-account" not in args:
        args = (*args, "--fee-account", key["address"])
    result = paychain(*base, *args)
    assert result.code != 0 and fragment in result.stderr + result.stdout
    assert not (tmp_path / "genesis.json").exists()  # nothing half-written
