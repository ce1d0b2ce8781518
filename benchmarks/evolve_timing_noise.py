"""How far evolve's runtime ratio strays when the machine is busy, and whether another estimator
strays less.

A prepared program (``PROGRAM_DIR/original.vmfb``, the first validation batch of
``PROGRAM_DIR/data.npz``; without PROGRAM_DIR, mobilenet-img32's MobileNet-V1 with random weights,
which time as trained ones do, compiled with the im2col flags evolve tunes for it) is timed against
an identical copy of itself, the way evolve times a
variant (`evoforge.mlir.iree_runner.time_interleaved`: one warm-up call each, then ``--repeats``
rounds of one call each, the order flipping every round, single-threaded ``local-sync``). The true
ratio is 1. Per trial, two estimators of it from the same calls:

- ``ratio of medians`` (evolve's before 2026-12-04): median(variant calls) / median(original calls);
- ``median of paired ratios`` (evolve's since, `RuntimeComparison.from_rounds`): the median over
  rounds of (variant call / original call) of the same round. Both calls of a round run back to
  back, so a load burst longer than a round slows both of them.

``--load N`` starts N background processes that alternate busy and idle spells of random length
(0.05-1.5 s, seeded), a bursty load like a test suite's; ``--load 0`` measures the machine as it
is (run it while something else runs to measure that). Reported per estimator: the median and the
90th percentile of |log ratio|, the worst ratio, and the share of trials below evolve's confirmation
threshold (0.97: an identical program that would look faster there).

    python benchmarks/evolve_timing_noise.py [PROGRAM_DIR] [--trials 40] [--repeats 15] [--load 2] [--json out.json]

PROGRAM_DIR is an evolve run's ``program/`` folder (e.g. ``runs/evolve-paper/_template/program``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.mlir.domain import CONFIRM_BELOW
from evoforge.mlir.iree_runner import RuntimeComparison, Worker, time_interleaved
from evoforge.mlir.sources import read_prepared


def bursty_load(seed: int, stop: Any) -> None:
    """(A background process.) Busy and idle spells of 0.05-1.5 s each until ``stop`` is set."""
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        busy_until = time.perf_counter() + float(rng.uniform(0.05, 1.5))
        while time.perf_counter() < busy_until:
            sum(i * i for i in range(1000))
        stop.wait(float(rng.uniform(0.05, 1.5)))


def estimates(variant: list[float], original: list[float]) -> dict[str, float]:
    """Both estimators of the runtime ratio from one trial's calls."""
    comparison = RuntimeComparison.from_rounds(variant, original)
    return {"ratio of medians": comparison.variant_s / comparison.baseline_s, "median of paired ratios": comparison.ratio}


def summarize(ratios: list[float]) -> dict[str, float]:
    deviations = sorted(abs(math.log(r)) for r in ratios)
    return {"median_abs_log": statistics.median(deviations), "p90_abs_log": deviations[int(0.9 * (len(deviations) - 1))],
            "lowest": min(ratios), "highest": max(ratios),
            "share_below_confirm": sum(r < CONFIRM_BELOW for r in ratios) / len(ratios)}


def random_mobilenet() -> tuple[bytes, str, list[np.ndarray]]:
    """(vmfb, entry, one batch of 32) of a random-weight MobileNet-V1 at 32x32, compiled with im2col."""
    import torch

    from evoforge.mlir.flag_tuning import FLAG_SETS
    from evoforge.mlir.iree_runner import compile_program
    from evoforge.mlir.program import from_torch
    from evoforge.workload.models import mobilenet_v1

    torch.manual_seed(0)
    example = torch.randn(32, 3, 32, 32)
    program = from_torch(mobilenet_v1().eval(), example, level="torch")
    vmfb = compile_program(program.text, input_type=program.input_type, extra_flags=list(FLAG_SETS["im2col"].flags), timeout_s=600)
    return vmfb, program.entry, [example.numpy()]


def prepared(program_dir: Path) -> tuple[bytes, str, list[np.ndarray]]:
    """(vmfb, entry, first validation batch) of an evolve run's ``program/`` folder."""
    program = read_prepared(program_dir)
    batch = np.load(program_dir / "data.npz")["x_val"][: program.inputs[0].shape[0]]
    return (program_dir / "original.vmfb").read_bytes(), program.entry, [batch]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program_dir", type=Path, nargs="?", default=None)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=15, help="rounds per trial (evolve's default: 15)")
    parser.add_argument("--load", type=int, default=2, help="background processes of bursty load (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    vmfb, entry, batch = prepared(args.program_dir) if args.program_dir else random_mobilenet()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    loads = [ctx.Process(target=bursty_load, args=(args.seed + i, stop), daemon=True) for i in range(args.load)]
    for p in loads:
        p.start()
    trials: dict[str, list[float]] = {"ratio of medians": [], "median of paired ratios": []}
    try:
        with Worker() as worker:
            for _ in range(args.trials):
                variant, original = worker.call(time_interleaved, vmfb, bytes(vmfb), "local-sync", entry, batch,
                                                args.repeats, timeout_s=600)
                for name, value in estimates(variant, original).items():
                    trials[name].append(value)
    finally:
        stop.set()
        for p in loads:
            p.join(timeout=5)
    results: dict[str, Any] = {"settings": {"trials": args.trials, "repeats": args.repeats, "load": args.load},
                               "estimators": {name: summarize(ratios) for name, ratios in trials.items()}, "trials": trials}
    print(f"identical program against itself, {args.trials} trials of {args.repeats} rounds, {args.load} bursty load processes")
    print("| estimator | median abs log ratio | 90th percentile | lowest | highest | share below 0.97 |\n|---|---|---|---|---|---|")
    for name, s in results["estimators"].items():
        print(f"| {name} | {s['median_abs_log']:.3f} | {s['p90_abs_log']:.3f} | {s['lowest']:.3f} | {s['highest']:.3f} "
              f"| {s['share_below_confirm']:.0%} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
