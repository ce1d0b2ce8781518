"""Shared driver for the compression benchmarks: run, then check targets on the test split."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ deprecation notices for int8 tensors

# The torchvision wheel that pairs with torch 2.13 on these machines is a CUDA build, which the
# Makefile installs apart from the venv's packages: the test suite's shim finds it and lets it load,
# here and in workers.
_SHIM = Path(__file__).resolve().parents[1] / "tests" / "support" / "torchvision_shim"
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_SHIM), os.environ.get("PYTHONPATH", "")) if p)
sys.path.insert(0, str(_SHIM))
import sitecustomize  # noqa: E402,F401  (the shim's import hook, in this process)

import evoforge  # noqa: E402
from evoforge.api import open_store  # noqa: E402
from evoforge.report import run_summary  # noqa: E402


def finished_run(run: Path) -> bool:
    """True when ``run`` holds a run that ended (an interrupted one is redone, not reused)."""
    if not (run / "run.db").exists():
        return False
    with open_store(run, readonly=True) as store:
        return store.meta("finished") is not None


def benchmark_args(default_budget: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", default=default_budget)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pop-size", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", default=None)
    parser.add_argument("--runtime", default="onnxruntime", help="where candidates are deployed and timed")
    parser.add_argument("--baseline-from", default=None,
                        help="a run directory whose trained baseline (baseline/baseline.pt) this run reuses")
    return parser


def run_benchmark(task: str, default_budget: str, targets: list[dict[str, Any]], metric: str, relative: bool,
                  args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Compress ``task``, print its front on the test split and whether each target is met;
    returns the results (also printed as one JSON line)."""
    args = args or benchmark_args(default_budget).parse_args()
    run_dir = Path(args.run or f"runs/bench-{task}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.baseline_from and not (run_dir / "baseline" / "baseline.pt").exists():
        (run_dir / "baseline").mkdir(parents=True, exist_ok=True)  # the cache is keyed by task and data: a mismatch retrains
        shutil.copyfile(Path(args.baseline_from) / "baseline" / "baseline.pt", run_dir / "baseline" / "baseline.pt")
    start = time.perf_counter()
    evoforge.compress(task, budget=args.budget, workers=args.workers, pop_size=args.pop_size, seed=args.seed, run_dir=run_dir,
                      runtime=args.runtime)
    wall = time.perf_counter() - start
    with open_store(run_dir, readonly=True) as store:
        statuses = Counter(e.status.value for e in store.evaluations().values())
        failures = {ev.reason[:120] for ev in store.evaluations().values() if not ev.ok}
    evaluations = sum(statuses.values())
    summary = run_summary(run_dir)
    baseline = summary["final"]["baseline"][metric]
    print(summary["headline"])
    print(f"wall time {wall / 60:.1f} min; baseline test {metric} {baseline:.4f}")
    rows = []
    for row in summary["front"]:
        test = row.get(f"test_{metric}")
        if test is None:
            continue
        if relative:
            drop = 100.0 * (test - baseline) / abs(baseline)  # % increase of an error metric
        else:
            drop = 100.0 * (baseline - test)  # accuracy points lost
        rows.append({**row, "test_drop": drop})
        print(f"  id {row['id']:>4}  test {metric} {test:.4f}  drop {drop:+.2f}{'%' if relative else ' pt'}  "
              f"size {row['size_ratio']:.3f}  latency@B {row['latency_ratio']:.3f} (re-timed {row.get('test_latency_ratio') or 0:.3f})  "
              f"vs eager {row.get('latency_vs_eager') or 0:.3f}  "
              f"{row.get('pipeline', '')}")
    results = {}
    for target in targets:
        def measured(row: dict[str, Any], name: str = target["objective"]) -> float:
            """The member's held-out measurement where the run made one (the re-timed test latency), else the search's."""
            value = row.get(f"test_{name}")
            return float(value if value is not None else row[name])

        hits = [r for r in rows if r["test_drop"] <= target["max_drop"] and measured(r) <= target["max_ratio"]]
        within = [r for r in rows if r["test_drop"] <= target["max_drop"]]
        best_row = min(within, key=measured, default=None)
        best = measured(best_row) if best_row else None
        ok = bool(hits)
        results[target["name"]] = {"met": ok, "best_ratio_within_drop": best}
        if best_row is not None:
            results[target["name"]]["best_member"] = {
                k: best_row.get(k) for k in ("id", "latency_ratio", "test_latency_ratio", "latency_vs_eager", "size_ratio", "test_drop",
                                             "pipeline")
            }
        print(f"target {target['name']}: {'MET' if ok else 'NOT MET'} (best {target['objective']} within the drop: {best})")
    failed = evaluations - statuses.get("ok", 0)
    print(f"evaluations {evaluations} ({evaluations / (wall / 60):.2f}/min), failed {failed} ({100 * failed / max(1, evaluations):.1f}%)")
    for reason in sorted(failures):
        print(f"  failure: {reason}")
    result = {"task": task, "runtime": args.runtime, "wall_min": wall / 60, "baseline": baseline, "evaluations": evaluations,
              "per_min": evaluations / (wall / 60), "failed": failed, "targets": results, "run": str(run_dir)}
    print(json.dumps(result))
    return result
