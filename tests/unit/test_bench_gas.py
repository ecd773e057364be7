"""scripts/bench_gas keeps working as the VM and its host change (it once broke unnoticed when the host
began taking its gas from the call's meter): a few of its cases run here, one of each family that
touches a different part of the VM. The figures themselves are not judged here; they are the
benchmark's to report on a quiet machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("case", ["stmt pass", "host storage_put small", "host verify_signed small",
                                  "str find adversarial", "builtin dict(4096 pairs)", "load one 16 KiB string"])
def test_the_gas_benchmark_measures_its_cases(case):
    finished = subprocess.run([sys.executable, "scripts/bench_gas.py", "--quick", "--json", "--only", case,
                               "--target-ms", "5", "--timeout-s", "60"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2_000:]
    report = json.loads(finished.stdout)
    measured = report["calls"] + report["loads"]
    assert measured, f"no case matches {case!r}"
    assert report["failures"] == [], report["failures"]
    for result in measured:
        assert result["ns_per_gas"] > 0, result
