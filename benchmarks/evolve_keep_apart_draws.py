"""How many single-edit variants of a sequence-first program couple the examples of a batch.

A GRU classifier (token ids -> embedding -> GRU -> last state -> linear, random weights) goes
through `evoforge.evolve`'s ONNX route, which turns the GRU into a loop over time steps on
``[T, B, H]`` tensors. The script draws ``--draws`` single edits (delete, copy, operand
replacement, resize in turn) with the draws that keep examples apart (or without, ``--no-rule``),
evaluates each with the batch check, and counts the outcomes. Run it against older code with
``PYTHONPATH=OLD_CHECKOUT/src`` to compare the rule's versions on the same draws' seed.

    python benchmarks/evolve_keep_apart_draws.py [ROOT] [--batch 8] [--draws 96] [--seed 0] [--no-rule]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

KINDS = ("delete", "copy", "operand_replace", "resize")


def gru_classifier():  # type: ignore[no-untyped-def]
    """The conformance matrix's GRU classifier, seeded."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suite's architectures
    from tests.support.architectures import GRUClassifier

    torch.manual_seed(0)
    return GRUClassifier().eval()


def count(root: Path, batch: int, draws: int, seed: int, rule: bool) -> dict[str, object]:
    from evoforge.layout import RunLayout
    from evoforge.mlir.api import prepare_program
    from evoforge.mlir.describe import describe_edits
    from evoforge.mlir.domain import EvolveDomain
    from evoforge.mlir.edits import EditError, EditListGenome
    from evoforge.mlir.mutate import random_edit
    from evoforge.search.domain import EvalContext

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 100, (64, 12)).astype(np.int64)
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data.npz"
    np.savez(data, x_val=ids, y_val=ids[:, 0] % 4, x_test=ids, y_test=ids[:, 0] % 4)
    layout = RunLayout(root / "run")
    prepare_program(gru_classifier(), layout, data=str(data), batch_size=batch)
    domain = EvolveDomain()
    domain.attach(layout)
    domain.prepare()
    outcomes: Counter[str] = Counter()
    coupled = []
    for i in range(draws):
        kind = KINDS[i % len(KINDS)]
        try:
            edit = random_edit(domain.program, rng, kind, keep_examples_apart=rule)
        except EditError:
            outcomes["nothing drawn"] += 1
            continue
        evaluation = domain.evaluate(EditListGenome(edits=(edit,)), EvalContext(seed=1))
        outcome = evaluation.metrics.get("failure_kind", "ok" if evaluation.ok else evaluation.status.value)
        outcomes[outcome] += 1
        if outcome == "batch_coupled":
            coupled.append(describe_edits(domain.program, (edit,))[0])
    return {"batch": batch, "draws": draws, "seed": seed, "rule": rule, "outcomes": dict(outcomes), "coupled": coupled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path("runs/evolve-keep-apart-draws"),
                        help="a new folder for the prepared program and its data (default: runs/evolve-keep-apart-draws)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--draws", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-rule", action="store_true", help="draw without keeping examples apart")
    args = parser.parse_args()
    result = count(args.root, args.batch, args.draws, args.seed, not args.no_rule)
    print(json.dumps(result, indent=2))
    share = result["outcomes"].get("batch_coupled", 0)  # type: ignore[attr-defined]
    print(f"\nbatch {args.batch}, rule {'on' if result['rule'] else 'off'}: {share} of {args.draws} variants coupled")


if __name__ == "__main__":
    main()
