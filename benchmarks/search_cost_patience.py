"""Patience replay: where `--patience N` would have stopped finished runs, and what it would have kept.

The rule only reads the feasible hypervolume each generation ended with (stored with the
generation), so replaying it on a finished run gives exactly the generation a run with that
patience stops at, up to the timing noise that makes two runs of one seed differ. Per N and
tolerance: the median (and worst) share of the final hypervolume kept, the median share of the
run's seconds spent, and the evaluations each run would have stopped after.

    python benchmarks/search_cost_patience.py             # peers.py's petra runs of both tasks
    python benchmarks/search_cost_patience.py RUN... --patience 2,3,5 --tolerance 0,0.001
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from evoforge.api import open_store
from evoforge.search.termination import Termination

DEFAULT_ROOT = Path("runs/peers")
DEFAULT_TASKS = ("digits-cnn", "series-regression")


def stop_generation(hypervolumes: list[float], patience: int, tolerance: float) -> int:
    """The index of the generation after which the rule stops the run (the last one if never)."""
    rule = Termination(stagnation_generations=patience, stagnation_eps=tolerance)
    for end in range(1, len(hypervolumes) + 1):
        if rule.reason(evaluations=0, seconds=0.0, generations=end, hypervolumes=hypervolumes[:end]) is not None:
            return end - 1
    return len(hypervolumes) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="finished runs (their generation records are read, nothing is evaluated)")
    parser.add_argument("--patience", default="2,3,5,8", help="patience values to replay (comma list)")
    parser.add_argument("--tolerance", default="0,0.001", help="relative-gain tolerances to replay (comma list)")
    args = parser.parse_args()
    runs = args.runs or sorted(str(r) for task in DEFAULT_TASKS for r in (DEFAULT_ROOT / task).glob("petra-*"))
    if not runs:
        raise SystemExit(f"no finished runs under {DEFAULT_ROOT}; run benchmarks/peers.py first or give runs")
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}  # one table per folder of runs (a task)
    for run in runs:
        with open_store(Path(run), readonly=True) as store:
            generations = store.generations()
        if not generations:
            raise SystemExit(f"{run} has no finished generation; give finished runs")
        groups.setdefault(str(Path(run).parent), {})[run] = generations
    for folder, records in groups.items():
        print(f"\n{folder} ({len(records)} runs)\n")
        print_table(records, [int(p) for p in args.patience.split(",")], [float(t) for t in args.tolerance.split(",")])


def print_table(records: dict[str, list[dict[str, Any]]], patiences: list[int], tolerances: list[float]) -> None:
    print("| patience | tolerance | HV kept median (worst) | seconds spent median | stopped after (evaluations) |")
    print("|---|---|---|---|---|")
    for patience in patiences:
        for tolerance in tolerances:
            kept, spent, stopped = [], [], []
            for gens in records.values():
                curve = [float(g["archive_hypervolume"]) for g in gens]
                stop = stop_generation(curve, patience, tolerance)
                kept.append(curve[stop] / curve[-1] if curve[-1] else 1.0)
                spent.append(gens[stop]["elapsed_s"] / gens[-1]["elapsed_s"])
                stopped.append(gens[stop]["evaluations"])
            print(f"| {patience} | {tolerance:g} | {statistics.median(kept):.3f} ({min(kept):.3f}) | "
                  f"{statistics.median(spent):.2f} | {', '.join(map(str, stopped))} |")

if __name__ == "__main__":
    main()
