#!/usr/bin/env python3
"""Check that the VM fuzzers find a mispriced operation: take one charge out of the VM and see.

A mutant is the VM with every gas charge made directly by one of its functions skipped (`builtin_zip`
without its charge for the tuples it will make, `str_join` without its charge for the text...). For
each function of node/contracts/vm.py that charges gas, a fresh worker process applies that mutant
and runs the catalog sweep of tests/vm_grammar.py (`extreme_cases` over `EXTREME_OPERATIONS`, what CI
runs), and with --programs N also N programs of the random grammar. A mutant the fuzzers miss is
either equivalent (the charge it drops guards a cost the caps already bound, or other charges on the
same path cover it) or a hole in the fuzzers; scripts/bench_gas run on the same mutant tells which
(`--bench`: the worst ns/gas of bench_gas's hand-written adversarial cases under the mutant).

    python scripts/vm_mutants.py [--only NAME] [--programs 300] [--bench]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def charging_functions() -> list[str]:
    """Names of the functions in vm.py that call a charge_* function or charge() themselves."""
    tree = ast.parse((ROOT / "node/contracts/vm.py").read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("charge"):
            if any(isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id.startswith("charge")
                   for call in ast.walk(node)):
                names.append(node.name)
    return sorted(set(names))


def apply_mutant(function_name: str) -> None:
    """Skip every charge that `function_name` makes itself (charges made by what it calls still count)."""
    from node.contracts import vm
    for name in [name for name in dir(vm) if name.startswith("charge") and callable(getattr(vm, name))]:
        original = getattr(vm, name)

        def skipping(*args, _original=original, **kwargs):
            if sys._getframe(1).f_code.co_name == function_name:
                return None
            return _original(*args, **kwargs)
        setattr(vm, name, skipping)


def run_mutant(function_name: str, programs: int) -> dict:
    """In this (worker) process: the mutant's findings by the sweep and by `programs` random programs."""
    from hypothesis import HealthCheck, given, seed, settings

    from tests.vm_grammar import EXTREME_OPERATIONS, SWEEP_GAS, check_program, extreme_cases, programs as grammar
    if function_name:
        apply_mutant(function_name)
    found = {"sweep": 0, "grammar": 0, "example": ""}
    for operation, kinds in EXTREME_OPERATIONS:
        for source in extreme_cases(operation, kinds):
            try:
                check_program(source, SWEEP_GAS)
            except AssertionError as violation:
                found["sweep"] += 1
                found["example"] = found["example"] or str(violation).splitlines()[0]
    if programs:
        @seed(1)
        @settings(max_examples=programs, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(grammar())
        def fuzz(source: str) -> None:
            try:
                check_program(source)
            except AssertionError:
                found["grammar"] += 1
        fuzz()
    return found


def bench_worst(function_name: str) -> str:
    """The worst case of scripts/bench_gas --quick under the mutant (applied in every bench process)."""
    environment = dict(os.environ, PAYCHAIN_VM_MUTANT=function_name,
                       PYTHONPATH=os.pathsep.join([str(ROOT / "scripts" / "vm_mutant_site"), str(ROOT)]))
    finished = subprocess.run([sys.executable, "scripts/bench_gas.py", "--quick", "--json"], cwd=ROOT,
                              env=environment, capture_output=True, text=True, timeout=1_800)
    report = json.loads(finished.stdout)
    worst = report["worst"]
    return f"{worst['ns_per_gas']:.0f} ns/gas ({worst['ratio']:.1f}x, {worst['case']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="one function's mutant (a name from vm.py)")
    parser.add_argument("--programs", type=int, default=0, help="random grammar programs per mutant, besides the sweep")
    parser.add_argument("--bench", action="store_true", help="also the worst bench_gas case under each mutant")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(run_mutant(args.worker, args.programs)))
        return
    names = [args.only] if args.only else charging_functions()
    caught = 0
    for name in names:
        finished = subprocess.run([sys.executable, __file__, "--worker", name, "--programs", str(args.programs)],
                                  capture_output=True, text=True, timeout=3_600)
        if finished.returncode != 0:
            print(f"{name:<24} worker failed: {finished.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        found = json.loads(finished.stdout)
        caught += bool(found["sweep"] or found["grammar"])
        line = f"{name:<24} sweep {found['sweep']:>3}  grammar {found['grammar']:>3}"
        if args.bench:
            line += f"  bench worst {bench_worst(name)}"
        print(f"{line}  {found['example'][:60]}", flush=True)
    print(f"{caught} of {len(names)} mutants caught")


if __name__ == "__main__":
    main()
