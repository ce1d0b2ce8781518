"""Executor scaling: the same search with the local executor (1 and 2 workers) and with Ray (2 workers).

The domain is a FaultDomain whose every evaluation sleeps ``--sleep`` seconds, standing in for a
real evaluation of fixed cost (it leaves the CPU to the driver, so the numbers show the
framework's own cost, not CPU contention). For each executor it reports start-up time (Ray:
starting the private local instance), the search's wall time (worker start included),
evaluations per minute, and the framework overhead: the share of ``workers x wall`` not spent
inside evaluations, over the whole run and after the first generation (warm workers).

    python benchmarks/scaling.py [--evaluations 120] [--sleep 0.4] [--pop 8]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from evoforge.execute.base import Executor
from evoforge.execute.local import LocalExecutor
from evoforge.search.domain import domain_spec
from evoforge.search.engine import Candidate, GenerationSummary, Search, SearchCallback
from evoforge.search.evaluation import Evaluation
from evoforge.search.termination import Termination
from evoforge.testing.domains import FaultDomain


class Timeline(SearchCallback):
    """Evaluation durations, and when the first generation ended."""

    def __init__(self) -> None:
        self.durations: list[tuple[int, float]] = []
        self.first_generation_end: float | None = None
        self.first_generation_evaluations = 0

    def on_evaluation(self, candidate: Candidate, evaluation: Evaluation) -> None:
        self.durations.append((candidate.generation, evaluation.duration_s))

    def on_generation(self, summary: GenerationSummary) -> None:
        if self.first_generation_end is None:
            self.first_generation_end = time.perf_counter()
            self.first_generation_evaluations = summary.evaluations


def make(kind: str, workers: int) -> Executor:
    if kind == "local":
        return LocalExecutor(workers, threads_per_worker=1)
    from evoforge.execute.ray_executor import RayExecutor

    return RayExecutor(workers=workers, num_cpus=1)


def measure(kind: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    domain = FaultDomain(["ok"] * args.pop, sleep_s=args.sleep)
    search = Search.create(
        domain, algorithm_options={"pop_size": args.pop}, termination=Termination(max_evaluations=args.evaluations), seed=1
    )
    timeline = Timeline()
    with make(kind, workers) as executor:
        t0 = time.perf_counter()
        executor.start(domain_spec(domain))
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        search.run(executor, callback=timeline)
        t2 = time.perf_counter()
    wall = t2 - t1
    busy = sum(d for _, d in timeline.durations)
    assert timeline.first_generation_end is not None
    steady_wall = t2 - timeline.first_generation_end
    steady_busy = sum(d for g, d in timeline.durations if g > 0)
    return {
        "executor": f"{kind} x{workers}",
        "evaluations": search.evaluations_done,
        "startup_s": startup,
        "wall_s": wall,
        "evals_per_min": 60 * search.evaluations_done / wall,
        "overhead": 1 - busy / (workers * wall),
        "steady_overhead": 1 - steady_busy / (workers * steady_wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluations", type=int, default=120)
    parser.add_argument("--sleep", type=float, default=0.4, help="seconds per evaluation")
    parser.add_argument("--pop", type=int, default=8)
    args = parser.parse_args()
    rows = [measure(kind, workers, args) for kind, workers in (("local", 1), ("local", 2), ("ray", 2))]
    ideal = args.evaluations * args.sleep
    print(f"{args.evaluations} evaluations of {args.sleep:g} s each (ideal wall: {ideal:.1f} s / workers)")
    print(f"{'executor':<10} {'evals':>5} {'startup s':>9} {'wall s':>7} {'evals/min':>9} {'overhead':>9} {'after gen 0':>11}")
    for r in rows:
        print(
            f"{r['executor']:<10} {r['evaluations']:>5} {r['startup_s']:>9.2f} {r['wall_s']:>7.2f} {r['evals_per_min']:>9.1f} "
            f"{r['overhead']:>9.1%} {r['steady_overhead']:>11.1%}"
        )


if __name__ == "__main__":
    main()
