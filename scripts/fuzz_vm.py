#!/usr/bin/env python3
"""Fuzz the contract VM with hostile programs from tests/vm_grammar.py, far longer than CI does.

Every program must load or be refused, then run to a value or a ContractError that is not a VM
failure, within the CPU time per gas its gas pays for (tests/vm_grammar.py says how that is judged).
Programs are drawn by Hypothesis in worker processes, each with its own seed; a violation prints the
program (replay it with tests/vm_grammar.check_program) and the run exits 1.

    python scripts/fuzz_vm.py --programs 100000 --workers 2
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.workers import die_with_parent  # noqa: E402

CHUNK = 500
"""Programs per task: a worker reports after each chunk, so progress shows and a crash loses little."""
WORKER_ADDRESS_SPACE_BYTES = 4 << 30
"""Each worker's address space (RLIMIT_AS): a program that makes the VM allocate without bound fails there
with MemoryError, reported as a violation, instead of taking the machine's memory (a first 100,000-program
run had a worker killed by the kernel at 17 GB). The VM's own bound is far below: MEMORY_BYTES_PER_GAS_MAX
× FUZZ_GAS in tests/vm_grammar.py, about 77 MB."""
RUNNING_FOLDER = Path(__file__).resolve().parents[1] / ".fuzz_vm"
"""Each worker writes the program it is about to run to RUNNING_FOLDER/worker-<pid>.py, so a worker that dies
anyway leaves the program that killed it behind."""


def limit_address_space() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft > WORKER_ADDRESS_SPACE_BYTES:
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_ADDRESS_SPACE_BYTES, hard))


def run_chunk(seed: int) -> tuple[dict[str, int], list[str]]:
    """(outcome counts, violations) for CHUNK programs drawn with `seed`."""
    from hypothesis import HealthCheck, given, seed as use_seed, settings, target

    from tests.vm_grammar import check_program, programs

    limit_address_space()
    running = RUNNING_FOLDER / f"worker-{os.getpid()}.py"
    counts: collections.Counter = collections.Counter()
    violations: list[str] = []

    @use_seed(seed)
    @settings(max_examples=CHUNK, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(programs())
    def fuzz(source: str) -> None:
        running.write_text(source)
        try:
            checked = check_program(source)
            counts[checked.outcome] += 1
            target(checked.ns_per_gas, label="ns per gas")
        except AssertionError as violation:
            counts["VIOLATION"] += 1
            violations.append(str(violation))
        except MemoryError:
            counts["VIOLATION"] += 1
            violations.append(f"MemoryError: past {WORKER_ADDRESS_SPACE_BYTES >> 30} GiB of address space\n{source}")

    try:
        fuzz()
    except MemoryError:   # in Hypothesis itself, drawing a program (the VM's own are caught above, as violations)
        counts["chunk_cut_short_generator_memory"] += 1
    return dict(counts), violations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    chunks = max(1, args.programs // CHUNK)
    RUNNING_FOLDER.mkdir(exist_ok=True)
    started = time.monotonic()
    totals: collections.Counter = collections.Counter()
    violations: list[str] = []
    with ProcessPoolExecutor(max_workers=args.workers, initializer=die_with_parent) as pool:
        futures = [pool.submit(run_chunk, args.seed + index) for index in range(chunks)]
        for done, future in enumerate(as_completed(futures), start=1):
            counts, found = future.result()
            totals.update(counts)
            violations.extend(found)
            for violation in found:
                print(f"VIOLATION\n{violation}\n", flush=True)
            if done % 10 == 0 or done == chunks:
                print(f"{done * CHUNK} programs, {len(violations)} violations, "
                      f"{time.monotonic() - started:.0f} s", flush=True)
    cut_short = totals.pop("chunk_cut_short_generator_memory", 0)
    if cut_short:
        print(f"{cut_short} chunks cut short: Hypothesis ran out of memory drawing a program (not a VM finding)")
    print(f"{sum(totals.values())} programs (seeds {args.seed}..{args.seed + chunks - 1}) in "
          f"{time.monotonic() - started:.0f} s, {args.workers} workers: {len(violations)} violations")
    print("outcomes: " + ", ".join(f"{name} {count}" for name, count in totals.most_common()))
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
