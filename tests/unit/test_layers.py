"""The layers hold (DESIGN §2, issue 13): an import that goes the wrong way fails here, so the layering
stays true as the code changes. Imports are read from the source (ast), every module of node, gateway and
wallet_cli; the closure of what consensus loads is checked in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("node", "gateway", "wallet_cli")

NODE_MODULES_ON_CLIENTS = {"node.cli", "node.localnet", "node.localnet_cli"}
"""Known exceptions to "node imports neither gateway nor wallet_cli", to be removed by issue 13 (the operator
CLI and local-network tooling move out of `node`). Exact: a module listed here that no longer needs it
fails the test, so the list only shrinks."""


def module_imports() -> dict[str, set[str]]:
    """module -> the names it imports from the project and from trio / libp2p."""
    imports: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            names: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
            imports[module] = {name for name in names if name.split(".")[0] in (*PACKAGES, "trio", "libp2p")}
    return imports


IMPORTS = module_imports()


def within(name: str, packages: tuple[str, ...]) -> bool:
    """`name` is one of `packages` or inside one (node.app is not node.application)."""
    return any(name == package or name.startswith(package + ".") for package in packages)


def importers_of(packages: tuple[str, ...], among: str) -> dict[str, list[str]]:
    """Modules of `among` that import something of `packages`, with what they import."""
    return {module: sorted(name for name in names if within(name, packages))
            for module, names in IMPORTS.items()
            if within(module, (among,)) and any(within(name, packages) for name in names)}


def test_the_node_imports_none_of_its_clients_but_the_known_exceptions() -> None:
    assert set(importers_of(("gateway", "wallet_cli"), "node")) == NODE_MODULES_ON_CLIENTS


def test_consensus_reaches_the_ledger_only_through_the_application_protocol() -> None:
    assert importers_of(("node.state", "node.execution", "node.contracts", "node.storage", "node.app",
                         "node.mempool"), "node.consensus") == {}


def test_trio_and_libp2p_only_in_the_p2p_package() -> None:
    outside = {module: names for module, names in importers_of(("trio", "libp2p"), "node").items()
               if not module.startswith("node.p2p")}
    assert outside == {} and importers_of(("trio", "libp2p"), "gateway") == {} \
        and importers_of(("trio", "libp2p"), "wallet_cli") == {}


@pytest.mark.parametrize("client, other", [("gateway", "wallet_cli"), ("wallet_cli", "gateway")])
def test_the_clients_do_not_import_each_other(client: str, other: str) -> None:
    assert importers_of((other,), client) == {}


def test_the_application_protocol_loads_no_execution_vm_or_storage() -> None:
    """What importing the protocol loads at run time (consensus imports it): block, transaction and state
    types, never execution, the VM, the mempool or LevelDB."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import json, sys, node.application, node.consensus.core; "
                               "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('node', 'plyvel')))))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    modules = json.loads(loaded.stdout)
    assert not [m for m in modules if within(m, ("node.execution", "node.contracts", "node.storage", "node.app",
                                                 "node.mempool", "plyvel"))], modules


def test_the_ledger_layers_import_none_of_the_node_faces() -> None:
    """Genesis, state, execution and the VM sit below the RPC server, the wiring and the CLI (the contract-value
    JSON codec lives in node/contracts/values_json.py so that genesis and the wallet need not reach into RPC)."""
    lower = ("node.limits", "node.crypto", "node.encoding", "node.blocks", "node.validators", "node.transactions",
             "node.state", "node.genesis", "node.execution", "node.contracts", "node.mempool", "node.storage",
             "node.application", "node.orders")
    offenders = {module: names for module, names in IMPORTS.items() if within(module, lower)
                 and any(within(name, ("node.rpc", "node.main", "node.cli", "node.localnet")) for name in names)}
    assert offenders == {}
