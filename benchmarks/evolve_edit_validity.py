"""How often does a random edit give a working variant of a real architecture, and what does it cost?

For each architecture of the conformance matrix (`tests/support/architectures.py`: torchvision and
transformers models at their real depth, tiny widths where the library allows, random weights),
the model is prepared as `evoforge.evolve(module, data=...)` prepares it (batch 4), then
``--draws`` random single edits of each default kind are drawn as the search draws them (uniform
targets, examples kept apart) and evaluated by the run's own domain (compile, run, batch check,
timing). Per architecture and kind it counts the outcomes (ok; no valid edit found in the draw's
20 tries; each failure kind: compile, runtime, non-finite outputs, batch-coupled, ...) and the
median seconds to draw an edit (with its retries), to compile and to run it; each failed variant's
edit and the first line of its reason are kept in the ``--json`` output.

This is GEVO-ML's invalid rate on models people use, the cost a search pays per variant before any
speedup. Outputs a table and ``--json``.

    python benchmarks/evolve_edit_validity.py [ROOT] [--architectures resnet18,bert,...] [--draws 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from _compress_common import finished_run  # noqa: F401  (installs the torchvision shim, for torchvision and transformers)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suite's architectures
from tests.support.architectures import ARCHITECTURES  # noqa: E402


def _data(root: Path, name: str, seed: int) -> Path:
    """A validation and test split of the architecture's kind of input, as an ``.npz`` evolve reads."""
    arch = ARCHITECTURES[name]
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split in ("val", "test"):
        inputs, labels = arch.data(rng, 16)
        values = list(inputs.values()) if isinstance(inputs, dict) else [inputs]
        if len(values) == 1:
            arrays[f"x_{split}"] = values[0]
        else:
            arrays.update({f"x_{split}.{i}": v for i, v in enumerate(values)})
        arrays[f"y_{split}"] = labels
    path = root / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def _model(name: str) -> Any:
    """The architecture with seeded random weights, taking its inputs positionally and returning logits."""
    import torch

    from evoforge.workload.inputs import InputSpec, ModelAdapter

    arch = ARCHITECTURES[name]
    torch.manual_seed(0)
    inputs, _ = arch.data(np.random.default_rng(0), 2)
    batch = {k: torch.as_tensor(v) for k, v in inputs.items()} if isinstance(inputs, dict) else torch.as_tensor(inputs)
    return ModelAdapter(arch.build().eval(), InputSpec.of(batch)).eval()


def measure(root: Path, name: str, draws: int, seed: int) -> dict[str, Any]:
    from evoforge.errors import ConfigError
    from evoforge.layout import RunLayout
    from evoforge.mlir.api import prepare_program
    from evoforge.mlir.domain import EvolveDomain
    from evoforge.mlir.edits import EDIT_KINDS, EditError, EditListGenome, edit_to_data
    from evoforge.mlir.mutate import random_edit
    from evoforge.mlir.sources import read_meta
    from evoforge.search.domain import EvalContext

    layout = RunLayout(root / name)
    t = time.perf_counter()
    try:
        prepare_program(_model(name), layout, data=str(_data(root, name, seed)), batch_size=4)
    except ConfigError as exc:
        return {"refused": str(exc).splitlines()[0][:200]}
    domain = EvolveDomain()
    domain.attach(layout)
    domain.prepare()
    prepare_s = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    kinds = [k for k in EDIT_KINDS if k != "resize_importance" or domain.program.level == "torch"]
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        outcomes: Counter[str] = Counter()
        failures: list[dict[str, Any]] = []
        draw_s, compile_s, run_s = [], [], []
        for _ in range(draws):
            t = time.perf_counter()
            try:
                edit = random_edit(domain.program, rng, kind, keep_examples_apart=True)
            except EditError:
                outcomes["no edit"] += 1
                continue
            finally:
                draw_s.append(time.perf_counter() - t)
            evaluation = domain.evaluate(EditListGenome(edits=(edit,)), EvalContext(seed=1))
            outcomes[evaluation.metrics.get("failure_kind", "ok" if evaluation.ok else evaluation.status.value)] += 1
            if evaluation.ok:
                compile_s.append(float(evaluation.metrics["compile_s"]))
                run_s.append(float(evaluation.metrics["run_s"]))
            else:
                failures.append({"edit": edit_to_data(edit), "reason": (evaluation.reason.strip().splitlines() or [""])[0][:300]})
        per_kind[kind] = {"outcomes": dict(outcomes), "failures": failures, "draw_s": statistics.median(draw_s),
                          "compile_s": statistics.median(compile_s) if compile_s else None,
                          "run_s": statistics.median(run_s) if run_s else None}
        print(f"  {name} {kind}: {json.dumps(per_kind[kind])}", flush=True)
    domain._state["worker"].close(kill=True)  # end this architecture's IREE worker before the next starts its own
    total = sum(sum(k["outcomes"].values()) for k in per_kind.values())
    ok = sum(k["outcomes"].get("ok", 0) for k in per_kind.values())
    return {"exporter": read_meta(layout.program).get("exporter"),
            "ops": domain.program.text.count(" = "), "prepare_s": prepare_s, "draws": total, "ok": ok,
            "kinds": per_kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path("runs/evolve-edit-validity"),
                        help="a folder for the prepared programs (kept for inspection) (default: runs/evolve-edit-validity)")
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES))
    parser.add_argument("--draws", type=int, default=4, help="draws per edit kind and architecture")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    names = [n for n in args.architectures.split(",") if n]
    unknown = [n for n in names if n not in ARCHITECTURES]
    if unknown:
        raise SystemExit(f"--architectures: unknown {unknown}; valid: {', '.join(ARCHITECTURES)}")
    args.root.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        results[name] = measure(args.root, name, args.draws, args.seed)
    groups = {"no edit": ("no edit",), "compile": ("compile", "compile_timeout"), "runtime": ("runtime", "crash", "timeout"),
              "nonfinite": ("nonfinite",), "coupled": ("batch_coupled",)}
    print(f"\n{'architecture':<20} {'ok':>9} " + " ".join(f"{g:>9}" for g in groups) + f" {'other':>6}"
          + f" {'draw s':>7} {'compile s':>9} {'run s':>6}")
    for name, r in results.items():
        if "refused" in r:
            print(f"{name:<20} refused: {r['refused']}")
            continue
        counts: Counter[str] = Counter()
        for k in r["kinds"].values():
            counts.update(k["outcomes"])
        grouped = {g: sum(counts[k] for k in kinds) for g, kinds in groups.items()}
        other = r["draws"] - counts["ok"] - sum(grouped.values())
        med = [statistics.median(v) if (v := [k[f] for k in r["kinds"].values() if k[f] is not None]) else float("nan")
               for f in ("draw_s", "compile_s", "run_s")]
        print(f"{name:<20} {r['ok']:>4}/{r['draws']:<4} " + " ".join(f"{n:>9}" for n in grouped.values())
              + f" {other:>6} {med[0]:>7.2f} {med[1]:>9.2f} {med[2]:>6.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
