"""GEVO-ML benchmark on the built-in programs.

1. digits-mobilenet (prediction program, torch level): is there a front member >= 50% faster
   than the original program at <= 2 points test-accuracy drop? (30-minute budget, 2 workers)
2. digits-2fcnet-train (training-step program): the best test-accuracy change among variants whose
   training time is no worse than the original's.

Also reports variants evaluated per minute and the invalid-variant rate.

    python benchmarks/evolve_digits.py [--budget 30m] [--train-budget 10m] [--workers 2]
        [--max-error-increase PTS] [--skip-train]

``--max-error-increase`` (default 2 points, the target's own bound) makes the prediction run treat
variants that lose more validation accuracy than that as infeasible, so the population stays among
accurate variants; a negative value turns the ceiling off.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import evoforge
from evoforge.api import open_store
from evoforge.report import run_summary


def stats(run_dir: Path, wall_s: float) -> dict[str, object]:
    with open_store(run_dir, readonly=True) as store:
        evaluations = store.evaluations()
    kinds = collections.Counter(e.metrics.get("failure_kind", e.status.value) for e in evaluations.values() if not e.ok)
    invalid = sum(kinds.values())
    return {
        "evaluated": len(evaluations),
        "per_minute": len(evaluations) / (wall_s / 60),
        "invalid_rate": invalid / max(1, len(evaluations)),
        "invalid_by_kind": dict(kinds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", default="30m")
    parser.add_argument("--train-budget", default="10m")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pop-size", type=int, default=16)
    parser.add_argument("--run", default=None)
    parser.add_argument("--max-error-increase", type=float, default=2.0, help="points; a negative value means no ceiling")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    root = Path(args.run or f"runs/bench-evolve-{time.strftime('%Y%m%d-%H%M%S')}")
    results: dict[str, object] = {}

    ceiling = args.max_error_increase if args.max_error_increase >= 0 else None
    start = time.perf_counter()
    evoforge.evolve("digits-mobilenet", budget=args.budget, workers=args.workers, pop_size=args.pop_size, run_dir=root / "predict",
                    max_error_increase=ceiling)
    wall = time.perf_counter() - start
    summary = run_summary(root / "predict")
    base = summary["final"]["baseline"]["accuracy"]
    print(summary["headline"])
    hits, best_ratio = [], None
    for row in summary["front"]:
        acc = row.get("test_accuracy")
        if acc is None:
            continue
        drop = 100 * (base - acc)
        print(f"  id {row['id']:>4} runtime x{row['runtime_ratio']:.3f} test acc {acc:.4f} ({-drop:+.2f} pt) edits {row['edits']}")
        if drop <= 2.0:
            best_ratio = row["runtime_ratio"] if best_ratio is None else min(best_ratio, row["runtime_ratio"])
            if row["runtime_ratio"] <= 0.5:
                hits.append(row["id"])
    results["predict"] = {"wall_min": wall / 60, "max_error_increase": ceiling,
                          "baseline_test_accuracy": base, "target_met": bool(hits),
                          "best_runtime_ratio_within_2pt": best_ratio, **stats(root / "predict", wall)}
    print(f"target >= 50% faster at <= 2 pt: {'MET' if hits else 'NOT MET'}; best ratio within 2 pt: {best_ratio}")
    if args.skip_train:
        print(json.dumps(results, default=str))
        return

    start = time.perf_counter()
    evoforge.evolve("digits-2fcnet-train", budget=args.train_budget, workers=args.workers, pop_size=args.pop_size,
                    run_dir=root / "train")
    wall = time.perf_counter() - start
    summary = run_summary(root / "train")
    base = summary["final"]["baseline"]["accuracy"]
    print(summary["headline"])
    best = None
    for row in summary["front"]:
        acc = row.get("test_accuracy")
        if acc is not None and row["runtime_ratio"] <= 1.0 and (best is None or acc > best[0]):
            best = (acc, row["runtime_ratio"], row["id"])
    change = None if best is None else 100 * (best[0] - base)
    results["train"] = {"wall_min": wall / 60, "baseline_test_accuracy": base, "best_accuracy_change_pt_at_equal_or_better_time": change,
                        "its_time_ratio": None if best is None else best[1], **stats(root / "train", wall)}
    print(f"training program: best test-accuracy change at equal or better training time: {change} pt")
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
