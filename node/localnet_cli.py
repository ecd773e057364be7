"""`paychain localnet up | down | status`: a local network of node processes on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from node import localnet
from node.localnet import DEV_PASSWORD


@click.group("localnet")
def localnet_group() -> None:
    """Run a local network on 127.0.0.1 (dev keys: never for production)."""


@localnet_group.command("up")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=Path("localnet"),
              show_default=True, help="Folder for genesis, node homes and dev wallets.")
@click.option("--validators", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Number of validators: 1, or 3f+1 (4, 7 …) for the PBFT network.")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=26657, show_default=True,
              help="Node i listens for RPC on base+2i and for p2p on base+2i+1.")
@click.option("--full-nodes", type=click.IntRange(0, 8), default=0, show_default=True,
              help="Non-voting full nodes to run beside the validators (multi-validator networks only); they "
                   "follow by block sync and forward transactions sent to them.")
@click.option("--fresh", is_flag=True, help="Delete this home's existing local network first (chain data and "
                                            "dev wallets) and create a new one.")
@click.option("--gateway/--no-gateway", "with_gateway", default=True, show_default=True,
              help="Also run the payment gateway (on the RPC port after the nodes') and the demo merchant's "
                   "webhook receiver (the port after that).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def up(home: Path, validators: int, full_nodes: int, base_port: int, fresh: bool, with_gateway: bool,
       as_json: bool) -> None:
    """Create the network (first time only) and start its nodes in the background."""
    home = home.resolve()
    running = [p for p in localnet.load_processes(home) if localnet.is_our_node(p)]
    if running:
        click.echo(f"error: a local network is already running from {home} (pids "
                   f"{', '.join(str(p.pid) for p in running)}); run `paychain localnet down --home {home}`", err=True)
        sys.exit(1)
    if validators != 1 and (validators - 1) % 3 != 0:
        click.echo("error: --validators must be 1 or 3f+1 (4, 7, 10 …) to tolerate f faulty validators", err=True)
        sys.exit(1)
    if full_nodes and validators == 1:
        click.echo("error: --full-nodes needs a multi-validator network (--validators 4 or more)", err=True)
        sys.exit(1)
    if fresh and (home / "genesis.json").exists():
        _remove_local_network(home)
    existing = _validator_count(home)
    existing_full_nodes = _node_homes(home, "full")
    if existing is not None and (existing, len(existing_full_nodes)) != (validators, full_nodes):
        click.echo(f"error: {home} holds a network of {existing} validator(s) and {len(existing_full_nodes)} full "
                   f"node(s), not {validators} and {full_nodes}; pass --fresh to replace it", err=True)
        sys.exit(1)
    fresh = existing is None
    if fresh:
        node_homes = localnet.create_homes(home, validators, base_port, full_nodes=full_nodes)
    else:
        node_homes = _node_homes(home, "node") + existing_full_nodes
    processes = []
    for node_home in node_homes:
        from node.config import load_config
        config = load_config(node_home)
        processes.append(localnet.start_node(node_home, node_home.name, config.rpc_port))
    localnet.save_processes(home, processes)
    try:
        for process in processes:
            localnet.wait_healthy(process.rpc_url, process.pid)
        if with_gateway:
            _start_gateway(home, processes[:validators], base_port, validators + full_nodes, processes)
    except (RuntimeError, TimeoutError) as error:
        for process in processes:
            localnet.stop_node(process)
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    data = {"home": str(home), "created": fresh, "wallet": str(home / "wallet"), "dev_password": DEV_PASSWORD,
            "nodes": [{"name": p.name, "pid": p.pid, "rpc_url": p.rpc_url} for p in processes
                      if p.name not in GATEWAY_PROCESSES]}
    if with_gateway:
        by_name = {p.name: p for p in processes}
        data["gateway"] = {"url": by_name["gateway"].rpc_url.rstrip("/"),
                           "merchant_api_key_file": str(home / "gateway" / "merchant_api_key"),
                           "webhook_receiver": by_name["webhook-receiver"].rpc_url + "events",
                           "webhook_log": str(home / "gateway" / "receiver.log")}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{'created' if fresh else 'restarted'} local network in {home}")
    for process in processes:
        click.echo(f"  {process.name}  pid {process.pid}  {process.rpc_url}")
    click.echo(f"dev wallets in {home / 'wallet'} (password: {DEV_PASSWORD})")


GATEWAY_PROCESSES = ("gateway", "webhook-receiver")


def _start_gateway(home: Path, validators: list[localnet.NodeProcess], base_port: int, slot: int,
                   processes: list[localnet.NodeProcess]) -> None:
    """Start the demo webhook receiver and the gateway, adding each to `processes` (and localnet.json) as soon
    as it runs, so a failed start leaves nothing `down` cannot stop. The gateway's home is made once; a
    restart uses the ports written in its config."""
    from gateway import localnet as gateway_localnet
    folder = home / "gateway"
    if not (folder / "config.toml").exists():
        port = localnet.rpc_port_of(base_port, slot)
        chain_id = json.loads((home / "genesis.json").read_text())["chain_id"]
        gateway_localnet.create_gateway_home(home, chain_id, [p.rpc_url for p in validators], port, port + 1)
    port, receiver_port = gateway_localnet.ports_of(folder)
    for start, process_port in ((gateway_localnet.start_receiver, receiver_port),
                                (gateway_localnet.start_gateway, port)):
        process = start(folder, process_port)
        processes.append(process)
        localnet.save_processes(home, processes)
        localnet.wait_healthy(process.rpc_url, process.pid)


@localnet_group.command("down")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=Path("localnet"),
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def down(home: Path, as_json: bool) -> None:
    """Stop exactly the node processes `up` started from this home."""
    home = home.resolve()
    stopped = [p.pid for p in localnet.load_processes(home) if localnet.stop_node(p)]
    if as_json:
        click.echo(json.dumps({"stopped": stopped}))
    else:
        click.echo(f"stopped {len(stopped)} node(s)" + (f": {', '.join(map(str, stopped))}" if stopped else ""))


@localnet_group.command("status")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=Path("localnet"),
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(home: Path, as_json: bool) -> None:
    """Height, view, primary and peers of every node of the local network."""
    from wallet_cli.rpc_client import RpcClient, RpcUnavailable
    rows = []
    for process in localnet.load_processes(home.resolve()):
        row = {"name": process.name, "pid": process.pid, "rpc_url": process.rpc_url,
               "running": localnet.is_our_node(process)}
        if process.name in GATEWAY_PROCESSES:
            rows.append(row)
            continue
        try:
            row["status"] = RpcClient(process.rpc_url, timeout_s=3).call("node_status")
        except RpcUnavailable as error:
            row["error"] = str(error)
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no local network started from {home}")
        return
    for row in rows:
        if "status" in row:
            s = row["status"]
            role = "full node" if s.get("mode") == "full-node" else "validator"
            click.echo(f"{row['name']}  {role}  pid {row['pid']}  height {s['height']}  view {s.get('view')}  "
                       f"primary {s.get('primary')}  peers {len(s.get('peers', []))}  "
                       f"last commit {s['last_block_time_ms']}")
        else:
            click.echo(f"{row['name']}  pid {row['pid']}  {'running' if row['running'] else 'stopped'}  "
                       f"{row.get('error', '')}")


def _node_homes(home: Path, prefix: str) -> list[Path]:
    """`<home>/<prefix><i>` folders made by `up`, by number."""
    homes = [p for p in home.glob(f"{prefix}*") if p.is_dir() and p.name[len(prefix):].isdigit()
             and (p / "config.toml").exists()]
    return sorted(homes, key=lambda p: int(p.name[len(prefix):]))


def _validator_count(home: Path) -> int | None:
    path = home / "genesis.json"
    if not path.exists():
        return None
    return len(json.loads(path.read_text()).get("validators", []))


def _remove_local_network(home: Path) -> None:
    """Delete what `up` created in `home` (and nothing else there)."""
    import shutil
    for node_home in _node_homes(home, "node") + _node_homes(home, "full"):
        shutil.rmtree(node_home)
    for name in ("genesis.json", "localnet.json"):
        (home / name).unlink(missing_ok=True)
    if (home / "gateway").is_dir():
        shutil.rmtree(home / "gateway")
    if (home / "wallet").is_dir():
        shutil.rmtree(home / "wallet")
