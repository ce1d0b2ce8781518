"""How much a compress run's own timings flatter its front (the winner's curse), and what timing
the front again at the end changes.

For each run: its feasible front by the search's timings, and as many other feasible evaluations
drawn at random (seeded). Each is timed again the way `CompressDomain.finalize` does at the end of
a run (`CompressDomain.retime`), front members and others alternating so that both meet the same
host. Reported per run and pooled: the median of (re-timed latency ratio / search's) for front
members and for the others, how many front members timed slower by more than 10%, and the hypervolume
of the front with the search's latency ratios and with the re-timed ones (quality and size as
stored; the task's fixed reference). If the search's timings of the front were unbiased, the
front's median would match the others'.

    python benchmarks/retime.py                        # makes 2 digits-cnn runs of 40 evaluations first
    python benchmarks/retime.py RUN [RUN ...] [--threads 1] [--json out.json]

``--threads`` applies to evaluations stored before the thread count was recorded (2 workers on 2
cores timed with 1 thread). Runs that already re-timed their front when they ended (every run
since the re-timing was added) also report how far this timing is from that one (``vs final``):
how repeatable a re-timing is on this host.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import _compress_common  # noqa: F401  (installs the torchvision shim)
import numpy as np

import evoforge
from evoforge.api import open_store
from evoforge.compression.domain import CompressDomain
from evoforge.front import Front, feasible_hypervolume
from evoforge.genome import genome_from_json
from evoforge.layout import RunLayout
from evoforge.pareto import reference_point
from evoforge.search.domain import domain_from_spec


def retime_run(run: Path, threads: int, seed: int) -> dict[str, Any]:
    """The run's front and an equal random draw of its other feasible evaluations, timed again."""
    with open_store(run, readonly=True) as store:
        domain = domain_from_spec((store.config() or {})["domain"], RunLayout(run))
        evaluations = store.evaluations()
        genomes = {k: genome_from_json(store.genome(k)) for k in evaluations}
        final = store.meta("final", {}) or {}
    assert isinstance(domain, CompressDomain), f"{run} is not a compress run"
    front = Front.from_evaluations(evaluations, genomes, domain.objectives)
    front_keys = [m.key for m in front if m.evaluation.ok]
    feasible = [k for k, e in evaluations.items() if e.ok and all(v <= 0 for v in e.constraints.values())]
    others = [k for k in feasible if k not in front_keys]
    rng = np.random.default_rng(seed)
    drawn = [str(k) for k in rng.permutation(others)[: len(front_keys)]] if others else []
    order = [k for pair in zip(front_keys, drawn + [""] * len(front_keys)) for k in pair if k]
    inputs = domain.latency_inputs()
    retimed: dict[str, float] = {}
    for key in order:
        evaluation = evaluations[key]
        if "latency_threads" not in evaluation.metrics:
            evaluation = dataclasses.replace(evaluation, metrics={**evaluation.metrics, "latency_threads": threads})
        ratios = domain.retime(evaluation, inputs)
        if ratios is not None:
            retimed[key] = ratios["latency_ratio"]

    def shift(keys: list[str]) -> list[float]:
        return [retimed[k] / evaluations[k].objectives["latency_ratio"] for k in keys if k in retimed]

    ref = reference_point(domain.objectives)
    timed = [k for k in front_keys if k in retimed]
    members = [evaluations[k] for k in timed]
    again = [dataclasses.replace(evaluations[k], objectives={**evaluations[k].objectives, "latency_ratio": retimed[k]})
             for k in timed]
    front_shift, other_shift = shift(front_keys), shift(drawn)
    repeat = [abs(retimed[k] / final[k]["latency_ratio"] - 1) for k in front_keys if k in retimed and "latency_ratio" in final.get(k, {})]
    return {
        "run": str(run),
        "front": len(front_shift),
        "others": len(other_shift),
        "front_shifts": front_shift,
        "other_shifts": other_shift,
        "front_median_shift": float(np.median(front_shift)) if front_shift else float("nan"),
        "others_median_shift": float(np.median(other_shift)) if other_shift else float("nan"),
        "front_slower_10pct": sum(s > 1.10 for s in front_shift),
        "hv_search": feasible_hypervolume(members, domain.objectives, ref),
        "hv_retimed": feasible_hypervolume(again, domain.objectives, ref),
        "vs_final": repeat,
    }


def own_runs(seeds: int, budget: int) -> list[Path]:
    """``seeds`` petra runs of digits-cnn with ``budget`` evaluations each, 2 workers."""
    root = Path(f"runs/bench-retime-{time.strftime('%Y%m%d-%H%M%S')}")
    for seed in range(1, seeds + 1):
        evoforge.compress("digits-cnn", budget=budget, workers=2, seed=seed, run_dir=root / f"seed-{seed}")
    return [root / f"seed-{seed}" for seed in range(1, seeds + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="compress runs (default: make them)")
    parser.add_argument("--seeds", type=int, default=2, help="runs to make when none are given")
    parser.add_argument("--budget", type=int, default=40, help="evaluations of each run made here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [retime_run(run, args.threads, args.seed) for run in (args.runs or own_runs(args.seeds, args.budget))]

    def vs_final(values: list[float]) -> str:
        return f"{np.median(values):.3f}" if values else "-"

    print("| run | front | median re-timed / search, front | others | front members >10% slower | "
          "front HV, search timings | re-timed | median abs(re-timed / final - 1) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['run']).name} | {r['front']} | {r['front_median_shift']:.3f} | {r['others_median_shift']:.3f} | "
              f"{r['front_slower_10pct']} | {r['hv_search']:.3f} | {r['hv_retimed']:.3f} | {vs_final(r['vs_final'])} |")
    pooled_front = [s for r in rows for s in r["front_shifts"]]
    pooled_other = [s for r in rows for s in r["other_shifts"]]
    print(f"| pooled | {len(pooled_front)} | {np.median(pooled_front):.3f} | {np.median(pooled_other):.3f} | "
          f"{sum(r['front_slower_10pct'] for r in rows)} | {np.median([r['hv_search'] for r in rows]):.3f} (median) | "
          f"{np.median([r['hv_retimed'] for r in rows]):.3f} | {vs_final([v for r in rows for v in r['vs_final']])} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
