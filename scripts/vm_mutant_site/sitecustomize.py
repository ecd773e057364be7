"""Applies the VM mutant named in PAYCHAIN_VM_MUTANT at start-up, so that scripts/vm_mutants.py --bench
runs scripts/bench_gas (and its worker processes) on the mutated VM. Nothing else puts this directory
on PYTHONPATH."""

import os

if os.environ.get("PAYCHAIN_VM_MUTANT"):
    from scripts.vm_mutants import apply_mutant

    apply_mutant(os.environ["PAYCHAIN_VM_MUTANT"])
