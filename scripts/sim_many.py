#!/usr/bin/env python3
"""Run many seeded consensus simulations (tests/sim) over mixed network sizes; print failing seeds and figures.

Each seed draws its own fault plan (tests/sim/faults.py): honest crash-restarts anywhere, storage
faults, up to f Byzantine validators and a Byzantine full node, skewed clocks, one-way partitions,
governance adding a validator. Seeds run in parallel worker processes; a failing seed replays exactly:

    python scripts/sim_many.py --seed 1234 --n 7 -v

A long run can be spread over several sittings with `--journal FILE`: every finished seed is appended
to the file (one JSON line with the source revision), a later run with the same file skips the seeds
already there, and the figures cover the whole journal. A journal refuses seeds from another revision
of the code, so every figure it gives is for one exact version.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.workers import die_with_parent  # noqa: E402

SIZES = (4, 5, 6, 7, 8, 9, 10)


def size_of(seed: int, fixed: int | None) -> int:
    return fixed if fixed is not None else SIZES[seed % len(SIZES)]


def run_one(job: tuple[int, int, int, int]) -> tuple[int, int, str | None, dict[str, int]]:
    """(seed, n, failure or None, fault mix) for one seed."""
    from tests.sim.simulator import run_seed
    logging.disable(logging.WARNING)
    seed, n, duration_ms, progress_ms = job
    try:
        sim = run_seed(seed, n=n, duration_ms=duration_ms, progress_ms=progress_ms)
    except Exception as error:  # any exception is a finding
        return seed, n, f"{type(error).__name__}: {error}"[:2_000], {}
    plan = sim.plan
    mix = collections.Counter({f"byzantine:{mode}": 1 for mode in plan.byzantine.values()})
    mix.update({"crashes": sim.crashes, "partitions": len(plan.partitions),
                "corrupt_wal": len(plan.corrupt_wal), "step_crash_rate>0": int(plan.step_crash_rate > 0),
                "storage_faults>0": int(plan.storage_fault_rate > 0),
                "lagging_clock": sum(1 for skew in plan.clock_skew_ms.values() if skew < -5_000),
                "governance": int(plan.add_full_node_at_ms is not None)})
    if plan.full_node_mode:
        mix[f"full_node:{plan.full_node_mode}"] += 1
    return seed, n, None, dict(mix)


def source_revision() -> str:
    """The commit the code runs from, with '+dirty' if files differ from it (such a run cannot be resumed)."""
    root = Path(__file__).resolve().parents[1]
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "node", "tests/sim", "scripts/sim_many.py")
    return git("rev-parse", "HEAD") + ("+dirty" if dirty else "")


def read_journal(path: Path, revision: str) -> dict[int, dict]:
    """seed -> entry of an earlier sitting; refuses a journal of another revision."""
    entries: dict[int, dict] = {}
    if not path.exists():
        return entries
    for line in path.read_text().splitlines():
        if not line.strip():
            continue  # a sitting killed mid-line leaves at most one torn line: the seed simply runs again
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry["revision"] != revision:
            sys.exit(f"{path} holds seeds of revision {entry['revision']}, this is {revision}: use another journal")
        entries[entry["seed"]] = entry
    return entries


def _run_all(jobs, workers: int, seconds_max: float | None, started: float):
    """Results as seeds finish; a bounded number in flight, and no new seed after `seconds_max`."""
    pending = collections.deque(jobs)
    with ProcessPoolExecutor(max_workers=max(1, workers), initializer=die_with_parent) as pool:
        running = set()
        while pending or running:
            while pending and len(running) < 2 * workers and (
                    seconds_max is None or time.monotonic() - started < seconds_max):
                running.add(pool.submit(run_one, pending.popleft()))
            if not running:
                return
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, help="validators for every seed (default: 4..10 by seed)")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=1_000)
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--duration-ms", type=int, default=7_000)
    parser.add_argument("--progress-ms", type=int, default=4_500)
    parser.add_argument("--seconds-max", type=float, help="stop starting seeds after this long; report what ran")
    parser.add_argument("--journal", type=Path, help="append results here and skip seeds already in it")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.count))
    failures: list[tuple[int, int]] = []
    mix: collections.Counter = collections.Counter()
    sizes: collections.Counter = collections.Counter()
    earlier_s = 0.0
    done = 0
    journal = None
    if args.journal is not None:
        revision = source_revision()
        if revision.endswith("+dirty"):
            sys.exit("--journal needs a clean checkout: the journal names the exact code its seeds ran on")
        earlier = read_journal(args.journal, revision)
        for entry in (earlier[seed] for seed in seeds if seed in earlier):
            done += 1
            sizes[entry["n"]] += 1
            mix.update(entry["mix"])
            earlier_s += entry["wall_s"]
            if entry["failure"] is not None:
                failures.append((entry["seed"], entry["n"]))
        print(f"{args.journal}: {done} of these seeds ran in earlier sittings ({len(failures)} failing) "
              f"on {revision[:12]}", flush=True)
        seeds = [seed for seed in seeds if seed not in earlier]
        journal = args.journal.open("a")
    jobs = [(seed, size_of(seed, args.n), args.duration_ms, args.progress_ms) for seed in seeds]
    total = done + len(jobs)
    started = time.monotonic()
    last_s = 0.0
    for seed, n, failure, seed_mix in _run_all(jobs, args.workers, args.seconds_max, started):
        done += 1
        sizes[n] += 1
        mix.update(seed_mix)
        if journal is not None:
            now_s = time.monotonic() - started
            journal.write(json.dumps({"seed": seed, "n": n, "failure": failure, "mix": seed_mix,
                                      "wall_s": round(now_s - last_s, 3), "revision": revision}) + "\n")
            journal.flush()
            last_s = now_s
        if failure is not None:
            failures.append((seed, n))
            print(f"FAIL seed {seed} n={n}: {failure}", flush=True)
        elif args.verbose:
            print(f"seed {seed} n={n}: ok {seed_mix}", flush=True)
        if done % 100 == 0:
            print(f"{done}/{total} seeds, {len(failures)} failing, "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    elapsed = time.monotonic() - started + earlier_s
    print(f"{done} seeds in {elapsed:.0f} s ({args.workers} workers{', whole journal' if journal else ''}): "
          f"{len(failures)} failing {failures[:20]}")
    print("sizes: " + ", ".join(f"n={n}: {count}" for n, count in sorted(sizes.items())))
    print("fault mix (seeds with, or total count): " + ", ".join(f"{k} {v}" for k, v in sorted(mix.items())))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
