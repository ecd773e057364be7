#!/usr/bin/env python3
"""Run many seeded consensus simulations (tests/sim) and print failing seeds for replay."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sim.simulator import InvariantViolation, run_seed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4, help="validators (4, 7, 10 …)")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=1_000)
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.count)
    failures = []
    started = time.monotonic()
    for done, seed in enumerate(seeds, 1):
        try:
            sim = run_seed(seed, n=args.n)
            if args.verbose:
                print(f"seed {seed}: heights {sim.honest_heights()} plan {sim.plan}")
        except (InvariantViolation, Exception) as error:  # any exception is a finding
            failures.append(seed)
            print(f"FAIL seed {seed}: {error}", flush=True)
        if done % 50 == 0:
            print(f"{done}/{len(seeds)} seeds, {len(failures)} failing, {time.monotonic() - started:.0f} s",
                  flush=True)
    print(f"{len(seeds)} seeds (n={args.n}): {len(failures)} failing {failures[:20]}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
