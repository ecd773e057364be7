"""A short run of scripts/chaos (the same code, imported): four validators under load survive a killed primary,
two validators killed at once, a SIGSTOP and a kill right after a commit, without a fork, without losing a
transaction the RPC reported committed, and the chain commits again after every fault."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import secrets
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "chaos"
FAULTS = ("kill-primary", "kill-two", "sigstop", "kill-after-commit")


def load_chaos():
    """The script as a module (it has no .py suffix); registered first, as its dataclasses look themselves up."""
    loader = importlib.machinery.SourceFileLoader("chaos", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("chaos", loader))
    sys.modules["chaos"] = module
    loader.exec_module(module)
    return module


@pytest.mark.timeout(180)
def test_faults_under_load_leave_one_history_and_every_acknowledged_payment() -> None:
    chaos = load_chaos()
    seed = secrets.randbelow(2**31)
    options = chaos.parse_options(["--cycles", str(len(FAULTS)), "--faults", ",".join(FAULTS), "--seed", str(seed),
                                   "--fault-seconds", "2", "--seconds-max", "75", "--resume-timeout-s", "30"])
    figures = chaos.run(options)
    replay = f"replay: scripts/chaos --seed {seed} --cycles {len(FAULTS)} --faults {','.join(FAULTS)}"
    assert figures["findings"] == [], replay
    assert figures["load_errors"] == [], replay
    assert figures["forks"] == 0 and figures["lost_transactions"] == 0 and figures["stalls"] == 0
    assert figures["faults"] == {kind: 1 for kind in sorted(FAULTS)}, replay
    assert figures["cycles_run"] == len(FAULTS), replay
    assert figures["primary_resume_s"]["samples"] == 1 and figures["two_down_resume_s"]["samples"] == 1
    assert figures["acknowledged_transactions"] > 0, "the load never saw a transaction committed"
    assert figures["transactions_compared"] >= 4 * figures["acknowledged_transactions"], \
        "every acknowledged transaction is looked up on all four nodes at the end"
    assert figures["ok"]
