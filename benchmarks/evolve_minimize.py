"""Minimizing an evolve run's front against searching on for the same time.

One evolve run (``ROOT/search``) is copied twice when it ends. In ``ROOT/minimized``
`evoforge.minimize` drops the edits that buy nothing from every feasible front member; in
``ROOT/longer`` the search resumes for the wall time minimization took: what a user would do
with that time without the command. Both copies share everything up to the copy, so the
difference is the extra time's use alone. Per copy: evaluations, front members, edits per front
member, the feasible hypervolume (validation), and the best front member at <= 2 points of test
drop (by the search's ratio, as every GEVO-ML table), with its re-timed speedup and its edits.
Then one line per minimized member.

    python benchmarks/evolve_minimize.py [--task bert-tokens] [--budget 20m] [--seed 1] [--root runs/evolve-minimize]
        [--json out.json]

Finished steps are not run again: a second call with the same root prints the tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from _compress_common import finished_run  # (its import also installs the torchvision shim)
from _evolve_common import best_within, test_drop_pt

import evoforge
from evoforge.api import open_store
from evoforge.front import feasible_hypervolume
from evoforge.genome import genome_from_json
from evoforge.layout import RunLayout
from evoforge.report import run_summary
from evoforge.report.text import run_reference
from evoforge.search.domain import domain_from_spec
from evoforge.search.minimize import MINIMIZED_META


def elapsed_s(run_dir: Path) -> float:
    """The wall seconds a finished run searched for (0 for no finished run)."""
    if not finished_run(run_dir):
        return 0.0
    with open_store(run_dir, readonly=True) as store:
        return float(store.meta("finished")["elapsed_s"])


def describe_run(run_dir: Path) -> dict[str, Any]:
    """The row of one copy (see the module docstring)."""
    summary = run_summary(run_dir)
    with open_store(run_dir, readonly=True) as store:
        config = store.config()
        evaluations = store.evaluations()
        edits = {row["key"]: len(genome_from_json(store.genome(row["key"])).edits) for row in summary["front"]}  # type: ignore[attr-defined]
    domain = domain_from_spec(config["domain"], RunLayout(run_dir))
    reference = run_reference(None, domain.objectives)
    best = best_within(summary)
    row: dict[str, Any] = {
        "run": run_dir.name, "evaluations": len(evaluations), "front": len(summary["front"]),
        "edits_per_member": sum(edits.values()) / max(1, len(edits)),
        "hypervolume": feasible_hypervolume(evaluations.values(), domain.objectives, reference),
    }
    if best is not None:
        row.update(best_id=best["id"], best_search_ratio=best["runtime_ratio"], best_retimed_ratio=best.get("test_runtime_ratio"),
                   best_drop_pt=test_drop_pt(summary, best), best_edits=edits[best["key"]])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="bert-tokens")
    parser.add_argument("--budget", default="20m")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", default="runs/evolve-minimize")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    root = Path(args.root)
    search, minimized, longer = root / "search", root / "minimized", root / "longer"
    if not finished_run(search):
        shutil.rmtree(search, ignore_errors=True)
        evoforge.evolve(args.task, run_dir=search, max_error_increase=2.0, budget=args.budget, seed=args.seed, workers=args.workers)
    for copy in (minimized, longer):
        if not copy.exists():
            shutil.copytree(search, copy)
    timing = root / "minimize.json"
    if not timing.exists():
        started = time.monotonic()
        records = evoforge.minimize(minimized)
        timing.write_text(json.dumps({"seconds": time.monotonic() - started, "records": records}, indent=2))
    spent = json.loads(timing.read_text())
    search_s = elapsed_s(search)
    if elapsed_s(longer) <= search_s + 1:
        evoforge.resume(longer, budget=f"{search_s + spent['seconds']:.0f}s")

    rows = [describe_run(d) for d in (search, minimized, longer)]
    print(f"minimizing took {spent['seconds'] / 60:.1f} min; the longer search was given the same")
    print("| copy | evaluations | front | edits per member | HV (validation) | best <= 2 pt: search speedup | re-timed | "
          "test drop pt | edits |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        best = (f"{1 / r['best_search_ratio']:.2f}x | {1 / r['best_retimed_ratio']:.2f}x | {r['best_drop_pt']:+.2f} | "
                f"{r['best_edits']}" if "best_id" in r and r.get("best_retimed_ratio") else "- | - | - | -")
        print(f"| {r['run']} | {r['evaluations']} | {r['front']} | {r['edits_per_member']:.1f} | {r['hypervolume']:.4f} | {best} |")
    with open_store(minimized, readonly=True) as store:
        ids = {key: number for number, key in enumerate(store.evaluations(), start=1)}
        stored = store.meta(MINIMIZED_META) or {}
    print("\n| member | edits | -> member | edits | timed now (ratio, error) | shorter (ratio, error) |")
    print("|---|---|---|---|---|---|")
    for r in stored.values():
        before, after = r.get("reference") or {}, r.get("objectives") or {}
        cells = [f"{v.get('runtime_ratio', float('nan')):.3f}, {v.get('error', float('nan')):.4f}" for v in (before, after)]
        print(f"| {ids[r['member']]} | {len(r['kept']) + len(r['removed'])} | {ids[r['result']]} | {len(r['kept'])} | "
              f"{cells[0]} | {cells[1]} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "minimize": spent}, indent=2, default=str))


if __name__ == "__main__":
    main()
