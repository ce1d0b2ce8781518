"""Batch coupling of the front members of finished evolve runs, and what it does to their best member.

Exports every front member of each run (into a temporary folder, through `evoforge.export_member`,
which measures the written vmfb's ``batch_coupling`` on the test split: the largest change of an
example's outputs when its batch-mates change, relative to the output's range; see
`evoforge.mlir.batch_check`). Then, per run, the best member at <= 2 points test-accuracy drop by
the search's own ratio (the rule of `evolve_paper.py`), among all members and among the
batch-independent ones, with both members' re-timed ratios. Meant for runs made before the check
existed (``batch_check`` off); a run made with it holds no coupled member.

    python benchmarks/evolve_batch_coupling.py [RUN ...] [--json out.json]

Without runs it reads the finished prediction runs under ``runs/evolve-paper`` (`evolve_paper.py`'s
default root), and says so when there are none.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from _compress_common import finished_run
from _evolve_common import MAX_DROP_PT, PAPER_ROOT, runs_or_paper_runs, speedup_cells, test_drop_pt

import evoforge
from evoforge.mlir.batch_check import COUPLING_LIMIT
from evoforge.report import run_summary


def front_coupling(run: Path) -> dict[str, Any]:
    """Each front member's coupling, search and re-timed ratios and test drop; the best members."""
    summary = run_summary(run)
    members = []
    with tempfile.TemporaryDirectory(prefix="evoforge-coupling-") as tmp:
        for row in summary["front"]:
            card = evoforge.export_member(run, row["id"], Path(tmp) / str(row["id"]))
            members.append({"id": row["id"], "key": row["key"], "edits": len(card["edits"]),
                            "batch_coupling": card.get("batch_coupling"), "search_ratio": row["runtime_ratio"],
                            "retimed_ratio": row.get("test_runtime_ratio"),
                            "test_drop_pt": test_drop_pt(summary, row)})
    within = [m for m in members if m["test_drop_pt"] <= MAX_DROP_PT]
    independent = [m for m in within if m["batch_coupling"] is not None and m["batch_coupling"] <= COUPLING_LIMIT]
    return {"run": str(run), "members": members,
            "coupled": sum(m["batch_coupling"] is not None and m["batch_coupling"] > COUPLING_LIMIT for m in members),
            "best": min(within, key=lambda m: m["search_ratio"], default=None),
            "best_independent": min(independent, key=lambda m: m["search_ratio"], default=None)}


def _member(m: dict[str, Any] | None) -> str:
    if m is None:
        return "none | - | - | -"
    return f"{speedup_cells(m['search_ratio'], m['retimed_ratio'], m['test_drop_pt'])} | {m['batch_coupling']:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help=f"finished evolve runs (default: those under {PAPER_ROOT})")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    runs = runs_or_paper_runs(args.runs, finished_run)
    if not runs:
        print(f"no runs given and no finished evolve_paper.py runs under {PAPER_ROOT}: run benchmarks/evolve_paper.py first")
        return
    results = []
    for run in runs:
        results.append(front_coupling(run))
        print(json.dumps(results[-1]), flush=True)
    print("\n| run | coupled front members | best at <= 2 pt: search | re-timed | test drop pt | coupling "
          "| best batch-independent: search | re-timed | test drop pt | coupling |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {Path(r['run']).name} | {r['coupled']} of {len(r['members'])} | {_member(r['best'])} | "
              f"{_member(r['best_independent'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
