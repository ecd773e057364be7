"""Node configuration (node/config.py): defaults, overrides, every rule, and the node key file."""

from __future__ import annotations

import json
import stat

import pytest

from node import limits
from node.config import FullNodePeer, InvalidConfig, load_config, load_node_key, save_node_key, with_overrides, write_config
from tests.support import keys


@pytest.fixture
def home(tmp_path):
    (tmp_path / "genesis.json").write_text("{}")
    return tmp_path


def write(home, text: str) -> None:
    (home / "config.toml").write_text(text)


def test_defaults_without_a_config_file(home):
    config = load_config(home)
    assert config.home == home.resolve()
    assert config.genesis_path == home.resolve() / "genesis.json"
    assert config.data_path == home.resolve() / "data"
    assert config.validator_key_path is None
    assert (config.rpc_host, config.rpc_port, config.p2p_port) == ("127.0.0.1", 26657, 26656)
    assert config.block_interval_ms_min == limits.block_interval_ms_min and config.log_level == "INFO"


def test_written_config_loads_back(home):
    write_config(home, rpc_port=3000, p2p_port=3001, rpc_host="0.0.0.0")
    config = load_config(home)
    assert (config.rpc_host, config.rpc_port, config.p2p_port) == ("0.0.0.0", 3000, 3001)


def test_command_line_overrides_win_and_none_means_unset(home):
    write(home, "rpc_port = 3000\nlog_level = \"debug\"\n")
    config = load_config(home, {"rpc_port": 4000, "p2p_port": None})
    assert (config.rpc_port, config.p2p_port, config.log_level) == (4000, 26656, "DEBUG")


def test_validator_key_is_found_when_present(home):
    save_node_key(home / "validator_key.json", keys("validator-0"))
    assert load_config(home).validator_key_path == home.resolve() / "validator_key.json"


def test_paths_are_relative_to_home(home):
    (home / "chain").mkdir()
    (home / "chain" / "g.json").write_text("{}")
    write(home, 'genesis = "chain/g.json"\ndata = "store"\n')
    config = load_config(home)
    assert config.genesis_path == home.resolve() / "chain" / "g.json"
    assert config.data_path == home.resolve() / "store"


def test_with_overrides_replaces_fields(home):
    assert with_overrides(load_config(home), rpc_port=1).rpc_port == 1


def test_invalid_config_toml_syntax(home):
    write(home, "rpc_port = = 1\n")
    with pytest.raises(InvalidConfig, match="config.toml"):
        load_config(home)


def test_invalid_config_unknown_setting(home):
    write(home, "rpc_prot = 1\nzzz = 2\n")
    with pytest.raises(InvalidConfig, match="unknown setting.s. rpc_prot, zzz"):
        load_config(home)


@pytest.mark.parametrize("value", ["-1", "65536", '"26657"', "true", "1.5"])
@pytest.mark.parametrize("name", ["rpc_port", "p2p_port"])
def test_invalid_config_port(home, name, value):
    write(home, f"{name} = {value}\n")
    with pytest.raises(InvalidConfig, match=f"{name} must be a port number 0..65535"):
        load_config(home)


@pytest.mark.parametrize("value", [limits.block_interval_ms_min - 1, limits.block_interval_ms_max + 1])
def test_invalid_config_block_interval_out_of_range(home, value):
    write(home, f"block_interval_ms_min = {value}\n")
    with pytest.raises(InvalidConfig, match="block_interval_ms_min must be in"):
        load_config(home)


@pytest.mark.parametrize("value", ['"fast"', "50.5", "true", "[50]"])
def test_invalid_config_block_interval_not_an_integer(home, value):
    write(home, f"block_interval_ms_min = {value}\n")
    with pytest.raises(InvalidConfig, match="block_interval_ms_min must be an integer"):
        load_config(home)


@pytest.mark.parametrize("value", ['"loud"', "10", '""'])
def test_invalid_config_log_level(home, value):
    write(home, f"log_level = {value}\n")
    with pytest.raises(InvalidConfig, match="log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        load_config(home)


def test_invalid_config_missing_genesis(tmp_path):
    with pytest.raises(InvalidConfig, match="no genesis at"):
        load_config(tmp_path)


# --- node key ----------------------------------------------------------------------------------

def test_node_key_round_trips_and_is_owner_only(tmp_path):
    path = tmp_path / "validator_key.json"
    save_node_key(path, keys("validator-0"))
    assert load_node_key(path) == keys("validator-0")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_invalid_node_key_missing(tmp_path):
    with pytest.raises(InvalidConfig, match="cannot read the node key"):
        load_node_key(tmp_path / "absent.json")


@pytest.mark.parametrize("text", ["not json", "[]", '{"seed": "zz"}', '{"seed": "00"}', "{}"])
def test_invalid_node_key_corrupt(tmp_path, text):
    path = tmp_path / "validator_key.json"
    path.write_text(text)
    with pytest.raises(InvalidConfig, match="cannot read the node key"):
        load_node_key(path)


def test_invalid_node_key_public_key_mismatch(tmp_path):
    path = tmp_path / "validator_key.json"
    save_node_key(path, keys("validator-0"))
    document = json.loads(path.read_text())
    document["public_key"] = keys("validator-1").public_key.hex()
    path.write_text(json.dumps(document))
    with pytest.raises(InvalidConfig, match="public key does not match the seed"):
        load_node_key(path)


def test_full_node_key_is_found_when_there_is_no_validator_key(home):
    save_node_key(home / "node_key.json", keys("full-node-0"))
    assert load_config(home).validator_key_path == home.resolve() / "node_key.json"


def test_full_node_allowlist_round_trips_through_the_written_config(home):
    peers = [FullNodePeer(keys(f"full-node-{j}").public_key, f"127.0.0.1:{4000 + j}") for j in range(2)]
    write_config(home, rpc_port=3000, p2p_port=3001, full_nodes=peers)
    assert load_config(home).full_nodes == tuple(peers)


@pytest.mark.parametrize("entry, rule", [
    ('public_key = "00"\np2p_address = "127.0.0.1:1"', "64 hex digits"),
    ('public_key = "zz"\np2p_address = "127.0.0.1:1"', "64 hex digits"),
    (f'public_key = "{"ab" * 32}"\np2p_address = ""', "p2p_address"),
    (f'public_key = "{"ab" * 32}"', "exactly public_key and p2p_address"),
    (f'public_key = "{"ab" * 32}"\np2p_address = "127.0.0.1:1"\nrole = "x"', "exactly public_key and p2p_address"),
])
def test_invalid_full_node_entry(home, entry, rule):
    write(home, f"[[full_nodes]]\n{entry}\n")
    with pytest.raises(InvalidConfig, match=rule):
        load_config(home)


def test_invalid_full_node_listed_twice(home):
    entry = f'[[full_nodes]]\npublic_key = "{"ab" * 32}"\np2p_address = "127.0.0.1:1"\n'
    write(home, entry * 2)
    with pytest.raises(InvalidConfig, match="twice"):
        load_config(home)


def test_invalid_full_node_allowlist_too_long(home):
    entries = "".join(f'[[full_nodes]]\npublic_key = "{index:064x}"\np2p_address = "127.0.0.1:1"\n'
                      for index in range(limits.full_nodes_max + 1))
    write(home, entries)
    with pytest.raises(InvalidConfig, match="at most"):
        load_config(home)


def test_admin_token_round_trips_and_the_config_is_private(home):
    write_config(home, rpc_port=3000, p2p_port=3001, admin_token="a" * 64)
    assert load_config(home).admin_token == "a" * 64
    assert stat.S_IMODE((home / "config.toml").stat().st_mode) == 0o600


@pytest.mark.parametrize("token", ["short", "x" * 31, 12345, "é" * 40])
def test_invalid_admin_token(home, token):
    write(home, f"admin_token = {json.dumps(token)}\n")
    with pytest.raises(InvalidConfig, match="admin_token"):
        load_config(home)


@pytest.mark.parametrize("value", ['"' + "a" * 40 + '"', '["short"]', "[42]", "[" + ", ".join(['"' + "t" * 40 + '"'] * 17) + "]"])
def test_invalid_gateway_tokens(home, value):
    write(home, f"gateway_tokens = {value}\n")
    with pytest.raises(InvalidConfig, match="gateway_tokens"):
        load_config(home)


def test_gateway_tokens_round_trip(home):
    write_config(home, rpc_port=3000, p2p_port=3001, gateway_tokens=["g" * 40, "h" * 64])
    assert load_config(home).gateway_tokens == ("g" * 40, "h" * 64)


@pytest.mark.parametrize("value", ['"node.example"', '["node.example:26657"]', '[""]', "[7]", '["a b"]'])
def test_invalid_rpc_hostnames(home, value):
    write(home, f"rpc_hostnames = {value}\n")
    with pytest.raises(InvalidConfig, match="rpc_hostnames"):
        load_config(home)
