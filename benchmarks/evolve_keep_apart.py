"""How well the example-keeping draw rule predicts batch coupling, and what runs gain from it.

For each finished evolve run, every variant the batch check judged (rejected as ``batch_coupled``,
or kept with a ``batch_coupling`` metric) is replayed edit by edit, and each edit is asked whether
the draws that keep examples apart would have made it (`evoforge.mlir.mutate.Session.mixes_examples`;
a resize of a per-example value's batch dimension). The table crosses "coupled / batch-independent"
with "holds an edit the rule would not draw / does not": a good rule flags the coupled ones and
leaves the others. Then, per run, what the search did: variants, invalid share, variants rejected
as coupled, and the best front member at <= 2 points test-accuracy drop (search and re-timed).

    python benchmarks/evolve_keep_apart.py [RUN ...] [--json out.json]   (default: evolve_paper.py's runs)

Runs made before the rule existed are what the classification is for; runs made with it should
show (almost) no coupled variant.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from _compress_common import finished_run
from _evolve_common import PAPER_ROOT, best_within, runs_or_paper_runs, speedup_cells, test_drop_pt

from evoforge.api import open_store
from evoforge.genome import genome_from_json
from evoforge.mlir import edits as E
from evoforge.mlir import irtools
from evoforge.mlir.mutate import Session
from evoforge.mlir.sources import read_prepared
from evoforge.report import run_summary


def rule_refuses(s: Session, edit: E.Edit) -> bool:
    """Whether the example-keeping draws would not have made ``edit`` on the session's program."""
    index = s.index()

    def value(name: str) -> Any:
        return irtools.resolve(name, s.fn, index)

    if isinstance(edit, E.Delete):
        op = irtools.lookup(edit.uid, index)
        return any(src.value and list(res.uses) and s.mixes_examples(value(src.value), res)
                   for res, src in zip(op.results, edit.sources))
    if isinstance(edit, E.OperandReplace):
        return s.mixes_examples(value(edit.source.value), irtools.lookup(edit.user, index).operands[edit.operand])
    if isinstance(edit, E.Copy):
        op = irtools.lookup(edit.uid, index)
        chosen = [(operand, value(c.value) if c.value else None) for operand, c in zip(op.operands, edit.operands)]
        refused = any(v is not None and s.mixes_examples(v, operand) for operand, v in chosen)
        reads = any(s.per_example(v if v is not None else operand) for operand, v in chosen)
        if edit.rewire_user:
            user = irtools.lookup(edit.rewire_user, index)
            refused = refused or s.mixes_examples(op.results[0], user.operands[edit.rewire_operand], reads_examples=reads)
        return refused
    if isinstance(edit, E.Resize):
        resized = value(edit.value)
        return s.per_example(resized) and edit.dim in s.batch_dims(resized)
    return False  # a block deletion rewires to a value of exactly the same type


def classify(run: Path) -> dict[str, Any]:
    """The cross-table of checked variants and the run's search figures."""
    program = read_prepared(run / "program")
    table: Counter[str] = Counter()
    with open_store(run, readonly=True) as store:
        evaluations = store.evaluations()
        for key, evaluation in evaluations.items():
            coupled = evaluation.metrics.get("failure_kind") == "batch_coupled"
            if not (coupled or "batch_coupling" in evaluation.metrics):
                continue  # not checked: failed earlier, or the run did not check
            genome = genome_from_json(store.genome(key))
            refused = False
            with Session(program) as s:
                for edit in genome.edits:  # type: ignore[attr-defined]
                    refused = refused or rule_refuses(s, edit)
                    s.apply(edit)
            table[f"{'coupled' if coupled else 'independent'}, {'refused' if refused else 'drawn'}"] += 1
        invalid = sum(not e.ok for e in evaluations.values())
        rejected = sum(e.metrics.get("failure_kind") == "batch_coupled" for e in evaluations.values())
    summary = run_summary(run)
    best = best_within(summary)
    return {"run": str(run), "table": dict(table), "variants": len(evaluations), "invalid": invalid,
            "rejected_coupled": rejected,
            "best": None if best is None else {"id": best["id"], "search_ratio": best["runtime_ratio"],
                                               "retimed_ratio": best.get("test_runtime_ratio"),
                                               "test_drop_pt": test_drop_pt(summary, best)}}


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
        results.append(classify(run))
        print(json.dumps(results[-1]), flush=True)
    print("\n| run | coupled: refused / drawn | batch-independent: refused / drawn | variants | invalid "
          "| rejected as coupled | best at <= 2 pt: search | re-timed | test drop pt |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        t, b = r["table"], r["best"]
        best = "none | - | -" if b is None else speedup_cells(b["search_ratio"], b["retimed_ratio"], b["test_drop_pt"])
        print(f"| {Path(r['run']).name} | {t.get('coupled, refused', 0)} / {t.get('coupled, drawn', 0)} | "
              f"{t.get('independent, refused', 0)} / {t.get('independent, drawn', 0)} | {r['variants']} | "
              f"{100 * r['invalid'] / max(r['variants'], 1):.0f}% | {r['rejected_coupled']} | {best} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
