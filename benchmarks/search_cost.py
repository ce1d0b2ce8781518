"""Search cost: the same front for less compute (multi-fidelity screening, prefix reuse, shared cache).

The configurations compared on one task, each seed starting from the same trained baseline:
  full   every candidate evaluated in full, no prefix reuse: a budget of --evaluations
  cheap  screening (--rungs, --eta, --promote, --schedule, --screen-by), prefix reuse on: a wall-time budget of --share of the
         median wall time of the full runs, so it gets that share of the CPU-seconds
  moasha Syne Tune's MOASHA at the cheap runs' budget and rungs: random sampling, its promotion
         decisions (`benchmarks/_moasha.py`)
  rerun  the first full seed run again against a shared evaluation cache the full run filled
  patience  plain petra with the full runs' budget and --patience N: it stops once the feasible
         hypervolume gains under 0.1% in N generations (with --patience)
  stop-early  the control: plain petra (every candidate in full, prefix reuse on) with the cheap runs'
         wall-time budget: what a user gets by giving the search less time instead of screening; each
         seed's control runs right after that seed's cheap run, and the two are compared seed by seed
CPU-seconds are wall time x workers. Reported per configuration: the median and range over seeds
of the hypervolume of all feasible full-fidelity evaluations (validation, and recomputed on the
test split) against the task's fixed reference, the CPU-seconds, and the share of evaluations
that started from a stored prefix. Target: cheap reaches the full runs' median HV (within 2%)
with <= 50% of their CPU-seconds.

    python benchmarks/search_cost.py                       # digits-cnn, 3 seeds, 60 evaluations, share 0.5
    python benchmarks/search_cost.py --full-from runs/peers/digits-cnn   # reuse peers.py's petra runs as "full"
                                                    # (their first --evaluations evaluations, and the time they took)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from _compress_common import finished_run  # importing it also installs the torchvision shim, as in every compress benchmark
from peers import ordered_evaluations, summarize_run

import evoforge
from evoforge.api import open_store
from evoforge.layout import RunLayout


def wall_s(run: Path) -> float:
    """Seconds the run searched: until it finished (a run cut between rungs includes the started
    generation's screenings), else until its last complete generation (runs stored before the
    finish record had the time)."""
    with open_store(run, readonly=True) as store:
        generations = store.generations()
        finished = store.meta("finished") or {}
    if "elapsed_s" in finished:
        return float(finished["elapsed_s"])
    return float(generations[-1]["elapsed_s"]) if generations else 0.0


def prefix_share(run: Path, count: int) -> float:
    """The share of the run's first ``count`` OK evaluations that started from a stored prefix."""
    ok = [e for _, e in ordered_evaluations(run)[0][:count] if e.ok]
    return sum(1 for e in ok if e.metrics.get("prefix_reused_stages")) / max(1, len(ok))


def evaluations_wall_s(run: Path, count: int) -> float:
    """Seconds the run had searched when its first ``count`` evaluations were done (at the end of
    that generation; its whole search when it has fewer)."""
    with open_store(run, readonly=True) as store:
        times = [(r["evaluations"], r["elapsed_s"]) for r in store.generations()]
    return next((t for n, t in times if n >= count), wall_s(run))


def summarize(runs: list[Path], counts: list[int | None], workers: int) -> dict[str, Any]:
    """One configuration's row: per run, its first ``counts[i]`` evaluations and the CPU-seconds
    they had taken, or (None) the whole run and all the CPU-seconds it searched."""
    row: dict[str, list[Any]] = {k: [] for k in ("hv_val", "hv_test", "cpu_s", "evaluations", "screened", "prefix_share")}
    for run, count in zip(runs, counts):
        budget = 10**9 if count is None else count
        summary = summarize_run(run, [budget])["budgets"][budget]
        row["hv_val"].append(summary["hv_val"])
        row["hv_test"].append(summary["hv_test"])
        row["cpu_s"].append((wall_s(run) if count is None else summary["wall_s"]) * workers)
        row["evaluations"].append(summary["evaluations"])
        row["screened"].append(screened(run))
        row["prefix_share"].append(prefix_share(run, budget))
    return row


def screened(run: Path) -> int:
    with open_store(run, readonly=True) as store:
        return sum(len(v) for v in store.screenings().values())


def compress_run(run: Path, task: str, template: Path | None, **options: Any) -> Path:
    if finished_run(run):
        return run  # finished earlier (delete the folder to redo it)
    shutil.rmtree(run, ignore_errors=True)
    if template is not None and template.exists():
        shutil.copytree(template, RunLayout(run).baseline)
    evoforge.compress(task, run_dir=run, algorithm="petra", pop_size=10, **options)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits-cnn")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--evaluations", type=int, default=60)
    parser.add_argument("--share", type=float, default=0.5, help="the cheap runs' CPU-seconds as a share of the full runs'")
    parser.add_argument("--rungs", default="0.25,1")
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--promote", default="top", help="the promotion rule: top or front")
    parser.add_argument("--screen-by", default="examples", help="what a screening scales: epochs or examples")
    parser.add_argument("--schedule", default="asynchronous", help="when to promote: asynchronous or synchronous")
    parser.add_argument("--label", default="cheap", help="the cheap runs' folder and row name (to compare settings side by side)")
    parser.add_argument("--patience", type=int, default=None, help="also run plain petra with this patience and the full budget")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", default="runs/search-cost")
    parser.add_argument("--full-from", default=None, help="a folder with finished petra-<seed> runs of the task to use as 'full'")
    parser.add_argument("--moasha", action=argparse.BooleanOptionalAction, default=True,
                        help="also run Syne Tune's MOASHA (random sampling, its promotion) at the cheap runs' budget")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    root = Path(args.root) / args.task
    start = time.perf_counter()
    template = root / "_baseline"
    full_runs = []
    for seed in range(1, args.seeds + 1):
        reused = Path(args.full_from) / f"petra-{seed}" if args.full_from else None
        if reused is not None and finished_run(reused):
            run = reused
        else:
            run = compress_run(root / f"full-{seed}", args.task, template, budget=args.evaluations, seed=seed,
                               workers=args.workers, prefix_cache_mb=0, eval_cache=str(root / "eval-cache"))
        if not template.exists():
            shutil.copytree(RunLayout(run).baseline, template)
        full_runs.append(run)
        print(f"full seed {seed}: {run} ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    full_walls = [evaluations_wall_s(r, args.evaluations) for r in full_runs]
    budget_s = args.share * statistics.median(full_walls)
    cheap_runs, early_runs = [], []
    for seed in range(1, args.seeds + 1):  # seed by seed, so that a slow spell of the machine hits both alike
        cheap_runs.append(compress_run(root / f"{args.label}-{seed}", args.task, template, budget=f"{budget_s:.0f}s", seed=seed,
                                       workers=args.workers, rungs=args.rungs, eta=args.eta, promote=args.promote,
                                       schedule=args.schedule, screen_by=args.screen_by))
        early_runs.append(compress_run(root / f"stop-early-{seed}", args.task, template, budget=f"{budget_s:.0f}s", seed=seed,
                                       workers=args.workers))
        print(f"{args.label} and stop-early seed {seed} ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    patient_runs = [
        compress_run(root / f"patience{args.patience}-{seed}", args.task, template, budget=args.evaluations, patience=args.patience,
                     seed=seed, workers=args.workers)
        for seed in range(1, args.seeds + 1)
    ] if args.patience else []
    moasha_runs = []
    if args.moasha:
        from _moasha import moasha_compress

        for seed in range(1, args.seeds + 1):
            run = root / f"moasha-{seed}"
            if not finished_run(run):
                shutil.rmtree(run, ignore_errors=True)
                shutil.copytree(template, RunLayout(run).baseline)
                moasha_compress(args.task, run, rungs=[float(r) for r in args.rungs.split(",")], eta=args.eta,
                                budget=f"{budget_s:.0f}s", seed=seed, workers=args.workers, pop_size=10)
            moasha_runs.append(run)
            print(f"moasha seed {seed} ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    rerun = None
    if (root / "eval-cache").exists():
        rerun = compress_run(root / "rerun-1", args.task, template, budget=args.evaluations, seed=1, workers=args.workers,
                             prefix_cache_mb=0, eval_cache=str(root / "eval-cache"))
    rows: dict[str, Any] = {}
    configurations = (("full", full_runs, args.evaluations), (args.label, cheap_runs, None), ("stop-early", early_runs, None),
                      (f"patience {args.patience}", patient_runs, None),
                      ("moasha", moasha_runs, None), ("rerun", [rerun] if rerun else [], args.evaluations))
    for name, runs, count in configurations:
        if runs:
            rows[name] = summarize(runs, [count] * len(runs), args.workers)
    print(f"\n## search cost on {args.task} ({args.seeds} seeds; {args.label}: rungs {args.rungs}, eta {args.eta}, "
          f"promote {args.promote} {args.schedule}, screen by {args.screen_by}, prefix reuse, "
          f"{args.share:.0%} of the full runs' CPU-seconds)\n")
    print("| configuration | HV val median [min, max] | HV test median [min, max] | CPU-s median | full evaluations | screened "
          "| prefix hits |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {statistics.median(r['hv_val']):.3f} [{min(r['hv_val']):.3f}, {max(r['hv_val']):.3f}] | "
              f"{statistics.median(r['hv_test']):.3f} [{min(r['hv_test']):.3f}, {max(r['hv_test']):.3f}] | "
              f"{statistics.median(r['cpu_s']):.0f} | {statistics.median(r['evaluations']):.0f} | "
              f"{statistics.median(r['screened']):.0f} | "
              f"{100 * statistics.median(r['prefix_share']):.0f}% |")
    if args.label in rows:
        full_hv, cheap_hv = statistics.median(rows["full"]["hv_val"]), statistics.median(rows[args.label]["hv_val"])
        ratio = statistics.median(rows[args.label]["cpu_s"]) / statistics.median(rows["full"]["cpu_s"])
        met = cheap_hv >= 0.98 * full_hv and ratio <= 0.5
        print(f"\ntarget (median HV within 2% at <= 50% of the CPU-seconds): {'met' if met else 'NOT met'} "
              f"(HV {cheap_hv:.3f} vs {full_hv:.3f}, CPU-seconds x{ratio:.2f})")
        early_hv = statistics.median(rows["stop-early"]["hv_val"])
        paired = [c - e for c, e in zip(rows[args.label]["hv_val"], rows["stop-early"]["hv_val"])]
        print(f"against stopping plain petra at the same CPU-seconds: HV {cheap_hv:.3f} vs {early_hv:.3f}; "
              f"seed by seed {', '.join(f'{d:+.3f}' for d in paired)} (median {statistics.median(paired):+.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
