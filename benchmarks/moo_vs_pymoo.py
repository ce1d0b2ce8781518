"""Our nsga2 against pymoo's NSGA2 on ZDT1/2/3 (30 variables) and DTLZ2 (12 variables, 3 objectives).

Same population (100), same evaluation budget, same variation (SBX eta 15 p 0.9, polynomial
mutation eta 20 p 1/n), 5 seeds. Hypervolume of each final non-dominated set against 1.1 in
every objective (moocore, exact). Prints a table of median hypervolumes and their ratio.

    python benchmarks/moo_vs_pymoo.py [--evaluations 20000] [--seeds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from evoforge.pareto import first_front_mask, hypervolume
from evoforge.problems import PROBLEMS, BenchmarkDomain
from evoforge.search.engine import Search
from evoforge.search.termination import Termination


def ours(problem: str, evaluations: int, pop: int, seed: int) -> np.ndarray:
    search = Search.create(BenchmarkDomain(problem), algorithm="nsga2", algorithm_options={"pop_size": pop},
                           termination=Termination(max_evaluations=evaluations), seed=seed)
    search.run()
    return np.array([[ind.evaluation.objectives[o.name] for o in search.domain.objectives] for ind in search.population])


def theirs(problem: str, evaluations: int, pop: int, seed: int) -> np.ndarray:
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.optimize import minimize
    from pymoo.problems import get_problem

    p = get_problem(problem, n_var=PROBLEMS[problem].n_var) if problem.startswith("zdt") else get_problem(problem, n_var=12, n_obj=3)
    res = minimize(p, NSGA2(pop_size=pop), ("n_eval", evaluations), seed=seed, verbose=False)
    return np.asarray(res.pop.get("F"))


def final_hv(F: np.ndarray, m: int) -> float:
    F = F[first_front_mask(F)]
    return hypervolume(F, np.full(m, 1.1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--evaluations", type=int, default=20000)
    parser.add_argument("--pop", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--problems", default="zdt1,zdt2,zdt3,dtlz2")
    args = parser.parse_args()
    print(f"budget {args.evaluations} evaluations, population {args.pop}, {args.seeds} seeds; HV reference 1.1")
    print(f"{'problem':8} {'ours (median HV)':>17} {'pymoo (median HV)':>18} {'ratio':>7} {'ours s':>7} {'pymoo s':>8}")
    worst = 1e9
    for problem in args.problems.split(","):
        m = PROBLEMS[problem].n_obj
        hv_ours, hv_theirs, t_ours, t_theirs = [], [], 0.0, 0.0
        for seed in range(args.seeds):
            t = time.perf_counter()
            hv_ours.append(final_hv(ours(problem, args.evaluations, args.pop, seed), m))
            t_ours += time.perf_counter() - t
            t = time.perf_counter()
            hv_theirs.append(final_hv(theirs(problem, args.evaluations, args.pop, seed), m))
            t_theirs += time.perf_counter() - t
        a, b = statistics.median(hv_ours), statistics.median(hv_theirs)
        worst = min(worst, a / b)
        print(f"{problem:8} {a:17.4f} {b:18.4f} {a / b:7.3f} {t_ours:7.1f} {t_theirs:8.1f}")
    print(f"worst ratio {worst:.3f} (target >= 0.98)")


if __name__ == "__main__":
    main()
