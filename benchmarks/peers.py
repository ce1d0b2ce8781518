"""Search quality against peers at the budgets real models allow.

Methods, all on evoforge's genome space, domain, executor and measurements: evoforge's petra,
nsga2 and random; Optuna's NSGA-II and multi-objective TPE samplers (`_peers.OptunaSampler`);
the five hand recipes a user would try first. For each task, method and seed one run of the
largest budget is made; a smaller budget is its prefix in the engine's own order, which is
exactly what a run with that budget evaluates.

Reported per task, method and budget: the median and spread over seeds of the hypervolume of all
feasible evaluations, on validation and on the test split, against the task's fixed reference;
the best size and latency reduction at <= the task's quality limit on test; wall time; and a
Mann-Whitney rank test of each method against the default. Plots of hypervolume against
evaluations go to --plots. Every run of a task must have searched from the same trained baseline
(its weights' hash and quality head the task's table and go into the JSON under "baseline"); a
root that mixes baselines is refused rather than summarized.

    python benchmarks/peers.py --quick                 # minutes: digits-cnn, 30 and 60 evaluations, 2 seeds
    python benchmarks/peers.py                         # digits-cnn and series-regression, 30/60/200, 5 seeds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from _compress_common import finished_run  # (its import also installs the torchvision shim)
from _peers import RECIPE_NAMES  # (importing it registers the Optuna samplers and the recipes)

import evoforge
from evoforge.api import open_store
from evoforge.compression.domain import CompressDomain
from evoforge.front import feasible_hypervolume
from evoforge.layout import RunLayout
from evoforge.machine import timing_machines
from evoforge.pareto import reference_point
from evoforge.search.domain import domain_from_spec

DEFAULT = "petra"
METHODS = ("petra", "petra-preselect", "petra-explore", "nsga2", "random", "optuna-nsga2", "optuna-tpe", "recipes")
VARIANTS = {"petra-preselect": ("petra", {"preselect": 8}), "petra-explore": ("petra", {"preselect": 8, "explore": 0.25})}
"""Methods that are an evoforge algorithm with other settings: petra-preselect is petra with each
child the best of 8 mutants by a model of the evaluations so far (the default before 2026-12-02's
last measurement); petra-explore is that with a quarter of its children taken as plain mutants."""


def ordered_evaluations(run: Path) -> tuple[list[tuple[str, Any]], list[tuple[int, float]], set[str]]:
    """(key, evaluation) in the order the engine asked for them (generation, then batch position),
    (evaluations, elapsed seconds) after each generation, and the keys the algorithm took from
    `Domain.warm_starts`."""
    from evoforge.search.algorithms.base import WARM_START

    with open_store(run, readonly=True) as store:
        evaluations = store.evaluations()
        order, warm = [], set()
        for gen in range(len(store.generations()) + 1):
            batch = store.batch(gen)
            if batch is None:
                break
            order.extend(o["key"] for o in batch["offspring"] if o["key"] in evaluations and o["key"] not in order)
            warm.update(o["key"] for o in batch["offspring"] if o["operator"] == WARM_START)
        times = [(r["evaluations"], r["elapsed_s"]) for r in store.generations()]
    return [(k, evaluations[k]) for k in order], times, warm


def test_view(domain: CompressDomain, evaluations: list[tuple[str, Any]]) -> list[Any]:
    """The evaluations with their quality objective and constraint recomputed on the test split."""
    from evoforge.workload.metrics import quality_drop_of
    from evoforge.workload.task import quality_direction

    ok = [(k, e) for k, e in evaluations if e.ok and e.artifacts.get("model")]
    final = domain.test_quality(ok)
    name, direction = domain.task.quality_metric, quality_direction(domain.task)
    base = final["baseline"][name]
    out = []
    for key, e in evaluations:
        if key not in final:
            out.append(e)
            continue
        drop = quality_drop_of(direction, base, final[key][name], relative=domain.relative_drop)
        objectives = {**e.objectives, "quality_drop": drop}
        constraints = {"quality_drop_limit": drop - domain.max_quality_drop} if domain.max_quality_drop is not None else {}
        out.append(dataclasses.replace(e, objectives=objectives, constraints=constraints))
    return out


def summarize_run(run: Path, budgets: list[int]) -> dict[str, Any]:
    layout = RunLayout(run)
    with open_store(run, readonly=True) as store:
        domain = domain_from_spec((store.config() or {})["domain"], layout)
    assert isinstance(domain, CompressDomain)
    evaluations, times, warm = ordered_evaluations(run)
    tested = test_view(domain, evaluations)
    ref = reference_point(domain.objectives)
    limit = domain.max_quality_drop
    curve = [feasible_hypervolume([e for _, e in evaluations[:k]], domain.objectives, ref) for k in range(1, len(evaluations) + 1)]
    with open_store(run, readonly=True) as store:
        workers = max(1, int(((store.config() or {}).get("run") or {}).get("workers") or 1))
    cpu_curve = [(elapsed * workers, curve[n - 1]) for n, elapsed in times if 0 < n <= len(curve)]
    feasible = [e.objectives for _, e in evaluations if e.ok and all(v <= 0 for v in e.constraints.values())]
    searched = [e.objectives for k, e in evaluations if k not in warm and e.ok and all(v <= 0 for v in e.constraints.values())]
    out: dict[str, Any] = {"curve": curve, "cpu_curve": cpu_curve, "budgets": {}, "feasible": feasible, "searched": searched,
                           "warm_starts": len(warm), "directions": {o.name: o.direction for o in domain.objectives},
                           "baseline": baseline_provenance(layout),
                           "machines": timing_machines(e.metrics for _, e in evaluations if e.ok)}
    for budget in budgets:
        val = [e for _, e in evaluations[:budget]]
        test = tested[:budget]
        within = [e for e in test if e.ok and e.objectives["quality_drop"] <= limit]
        wall = next((t for n, t in times if n >= min(budget, len(evaluations))), times[-1][1] if times else 0.0)
        out["budgets"][budget] = {
            "evaluations": len(val),
            "hv_val": feasible_hypervolume(val, domain.objectives, ref),
            "hv_test": feasible_hypervolume(test, domain.objectives, ref),
            "best_size_reduction": 1 - min((e.objectives["size_ratio"] for e in within), default=1.0),
            "best_latency_reduction": 1 - min((e.objectives["latency_ratio"] for e in within), default=1.0),
            "wall_s": wall,
        }
    return out


def baseline_provenance(layout: RunLayout) -> dict[str, Any]:
    """Which trained baseline a run searched from: the first 12 hex digits of the SHA-256 of its
    weights (each tensor's name and bytes, in name order; not the file's bytes, which older
    versions made depend on the saving process) and its validation and test quality. Runs
    compare only when these match."""
    import hashlib

    import torch

    state = torch.load(layout.baseline / "baseline.pt", map_location="cpu", weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    numbers = json.loads((layout.baseline / "baseline.json").read_text())
    return {"weights_sha256": digest.hexdigest()[:12], "validation": numbers.get("validation"), "test": numbers.get("test")}


def shared_baseline(methods: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The baseline every run of a task searched from; raises when the runs mix baselines, since
    their hypervolumes then measure different models."""
    seen = {r["baseline"]["weights_sha256"]: r["baseline"] for runs in methods.values() for r in runs}
    if len(seen) > 1:
        raise SystemExit(f"the runs searched from {len(seen)} different baselines ({', '.join(sorted(seen))}); "
                         "compare runs of one baseline (copy its _baseline folder into a new root)")
    return next(iter(seen.values()), {})


def shared_machine(methods: dict[str, list[dict[str, Any]]]) -> str | None:
    """The machine every run of a task was timed on (None when no run says); raises when they
    were timed on several, since latency ratios differ between processors."""
    seen = {name for runs in methods.values() for r in runs for name in r.get("machines", {})}
    if len(seen) > 1:
        raise SystemExit(f"the runs were timed on {len(seen)} different machines ({'; '.join(sorted(seen))}); "
                         "compare runs timed on one machine")
    return next(iter(seen), None)


def run_method(task: str, method: str, seed: int, budget: int, workers: int, root: Path) -> Path:
    """One run; the task's first run leaves its baseline folder as a template that later runs
    start from (the baseline is trained with the task's seed, so it is the same in every run: this
    saves its training and probing, and every method searches the same space). The task's runs
    share an evaluation cache, as a user's runs would: a (genome, seed) pair is measured once, so a
    seed's recipe run and petra's warm starts of that seed (the same genomes) hold the same points."""
    run = root / task / f"{method}-{seed}"
    if finished_run(run):
        return run  # a finished run from an earlier invocation (delete the folder to redo it)
    template = root / task / "_baseline"
    if template.exists():
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(template, RunLayout(run).baseline)
    budget = len(RECIPE_NAMES) if method == "recipes" else budget
    options: dict[str, Any] = {"pop_size": 10} if method != "recipes" else {"pop_size": 5}
    algorithm, extra = VARIANTS.get(method, (method, {}))
    evoforge.compress(task, algorithm=algorithm, budget=budget, seed=seed, workers=workers, run_dir=run,
                      eval_cache=str(root / task / "_eval_cache"), **options, **extra)
    if not template.exists():
        shutil.copytree(RunLayout(run).baseline, template)
    return run


def rank_test(a: list[float], b: list[float]) -> float:
    from scipy.stats import mannwhitneyu

    if len(a) < 2 or len(b) < 2 or (len(set(a)) == 1 and set(a) == set(b)):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def report(results: dict[str, dict[str, list[dict[str, Any]]]], budgets: list[int], plots: Path | None) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for task, methods in results.items():
        baseline = shared_baseline(methods)
        print(f"\n## {task}\n\nbaseline {baseline.get('weights_sha256')}: validation {baseline.get('validation')}, "
              f"test {baseline.get('test')}\n")
        machine = shared_machine(methods)
        if machine:
            print(f"timed on {machine}\n")
        table.setdefault(task, {})["baseline"] = baseline
        table[task]["machine"] = machine
        print("| method | budget | HV val median [min, max] | HV test median [min, max] | size -% at limit (test) | "
              "latency -% at limit (test) | wall min | vs " + DEFAULT + " p |")
        print("|---|---|---|---|---|---|---|---|")
        for budget in budgets:
            default = [r["budgets"][budget]["hv_val"] for r in methods.get(DEFAULT, []) if budget in r["budgets"]]
            for method, runs in methods.items():
                rows = [r["budgets"][budget] for r in runs if budget in r["budgets"]]
                if not rows:
                    continue
                val = [r["hv_val"] for r in rows]
                test = [r["hv_test"] for r in rows]
                p = rank_test(default, val) if method != DEFAULT else float("nan")
                entry = {
                    "hv_val_median": float(np.median(val)), "hv_val_range": [min(val), max(val)],
                    "hv_test_median": float(np.median(test)), "hv_test_range": [min(test), max(test)],
                    "size_reduction_median": float(np.median([r["best_size_reduction"] for r in rows])),
                    "latency_reduction_median": float(np.median([r["best_latency_reduction"] for r in rows])),
                    "wall_min_median": float(np.median([r["wall_s"] for r in rows])) / 60, "p_vs_default": p, "seeds": len(rows),
                }
                table.setdefault(task, {}).setdefault(method, {})[budget] = entry
                budget_text = str(budget) if method != "recipes" else f"{len(RECIPE_NAMES)} (fixed)"
                print(f"| {method} | {budget_text} | {entry['hv_val_median']:.3f} [{min(val):.3f}, {max(val):.3f}] | "
                      f"{entry['hv_test_median']:.3f} [{min(test):.3f}, {max(test):.3f}] | "
                      f"{100 * entry['size_reduction_median']:.1f} | {100 * entry['latency_reduction_median']:.1f} | "
                      f"{entry['wall_min_median']:.1f} | {'' if method == DEFAULT else f'{p:.3f}'} |")
        reach(methods, max(budgets))
        coverage(methods)
        if plots is not None:
            plot(task, methods, plots / f"peers-{task}.png")
    return table


def reach(methods: dict[str, list[dict[str, Any]]], budget: int) -> None:
    """How many evaluations the default's median curve needs to reach each peer's final median HV."""
    runs = methods.get(DEFAULT, [])
    if not runs:
        return
    n = min(len(r["curve"]) for r in runs)
    median = np.median(np.array([r["curve"][:n] for r in runs]), axis=0)
    for method, peer in methods.items():
        if method in (DEFAULT, "recipes") or not peer:
            continue
        target = float(np.median([r["budgets"][budget]["hv_val"] for r in peer if budget in r["budgets"]]))
        hit = next((i + 1 for i, v in enumerate(median) if v >= target), None)
        where = f"at {hit} evaluations ({100 * hit / budget:.0f}% of {budget})" if hit else f"not within {n} evaluations"
        print(f"- {DEFAULT} reaches {method}'s final median HV {target:.3f} {where}")


def _weakly_dominates(a: dict[str, float], b: dict[str, float], directions: dict[str, str]) -> bool:
    return all((a[k] <= b[k]) if d == "minimize" else (a[k] >= b[k]) for k, d in directions.items())


def coverage(methods: dict[str, list[dict[str, Any]]]) -> None:
    """Per run of each method, how many feasible hand-recipe points (of the same seed's recipe
    run) some feasible evaluation of the run weakly dominates (validation objectives), and how many
    an evaluation that is not a warm start does (petra's warm starts hold the recipes)."""
    recipes = methods.get("recipes", [])
    if not recipes:
        return
    for method, runs in methods.items():
        if method == "recipes":
            continue
        counts = []
        for run, recipe in zip(runs, recipes):
            points = recipe["feasible"]
            covered = [sum(any(_weakly_dominates(p, q, run["directions"]) for p in run[kind]) for q in points)
                       for kind in ("feasible", "searched")]
            counts.append(f"{covered[0]}/{len(points)}" + (f" ({covered[1]} by a searched member)" if run["warm_starts"] else ""))
        print(f"- {method}: feasible recipe points covered per seed: {', '.join(counts)}")


def plot(task: str, methods: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, cpu_ax) = plt.subplots(1, 2, figsize=(11.0, 4.0), dpi=100)
    for method, runs in methods.items():
        if method == "recipes" or not runs:
            continue
        n = min(len(r["curve"]) for r in runs)
        curves = np.array([r["curve"][:n] for r in runs])
        x = np.arange(1, n + 1)
        line = ax.plot(x, np.median(curves, axis=0), label=method)[0]
        ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.12)
        for i, r in enumerate(runs):  # each seed's HV at the end of each generation against its CPU-seconds
            points = np.array(r.get("cpu_curve") or [(0.0, 0.0)])
            cpu_ax.plot(points[:, 0] / 60, points[:, 1], color=line.get_color(), alpha=0.6, label=method if i == 0 else None)
    for r in methods.get("recipes", []):
        for axis in (ax, cpu_ax):
            axis.axhline(r["budgets"][max(r["budgets"])]["hv_val"], color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume of feasible evaluations (validation)")
    ax.set_title(f"{task}: median and range over seeds (dotted: hand recipes)", fontsize=9)
    ax.legend(fontsize=8)
    cpu_ax.set_xlabel("CPU-minutes (wall time x workers)")
    cpu_ax.set_title("the same runs against compute, one line per seed", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits-cnn, budgets 30 and 60, 2 seeds")
    parser.add_argument("--tasks", default="digits-cnn,series-regression")
    parser.add_argument("--budgets", default="30,60,200")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", default="runs/peers", help="where the runs go (finished runs are reused)")
    parser.add_argument("--plots", default="docs/bench", help="folder for the PNG plots ('' for none)")
    parser.add_argument("--json", default=None, help="write the table as JSON here")
    parser.add_argument("--report-only", action="store_true", help="summarize the finished runs under --root; start none")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.budgets, args.seeds = "digits-cnn", "30,60", 2
    budgets = sorted(int(b) for b in args.budgets.split(","))
    root = Path(args.root)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    start = time.perf_counter()
    for task in args.tasks.split(","):
        for seed in range(1, args.seeds + 1):
            for method in args.methods.split(","):
                if args.report_only:
                    if finished_run(root / task / f"{method}-{seed}"):
                        results.setdefault(task, {}).setdefault(method, []).append(summarize_run(root / task / f"{method}-{seed}", budgets))
                    continue
                run = run_method(task, method, seed, max(budgets), args.workers, root)
                results.setdefault(task, {}).setdefault(method, []).append(summarize_run(run, budgets))
                print(f"{task} {method} seed {seed}: done ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    table = report(results, budgets, Path(args.plots) if args.plots else None)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2, default=float))


if __name__ == "__main__":
    main()
