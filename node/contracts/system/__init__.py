"""System contracts: contract sources shipped with the node and deployed at genesis.

Each `<name>.contract` file is the exact source deployed on chain (Python-subset contract
language, docs/CONTRACTS.md), readable by every merchant it may charge; `contract_get` returns
the same text from the chain.
"""

from __future__ import annotations

from pathlib import Path

ORDERS = "orders"
CROSSBORDER = "crossborder"


def source(name: str) -> str:
    """The source text of system contract `name`."""
    return (Path(__file__).parent / f"{name}.contract").read_text(encoding="utf-8")
