"""Screening replay: how well a screening rule picks, on the candidates a real run screened.

For each stored multi-fidelity compress run given, the candidates its first generation screened are
evaluated again in one process: in full, and at the run's first rung under each epoch floor in
--floors (0: plain scaling of every epoch count; 2: the default, `SCREENING_MIN_EPOCHS`). Promotion
is then replayed on those results (the run's own rule, each --promote count), and each rule is scored
by the hypervolume of the warm starts' stored evaluations plus the promoted candidates' full ones,
against the task's fixed reference. Also reported: how many candidates feasible in full each rule
calls feasible, and how many it puts more than 5 quality points over the limit.

Minutes per run on digits-cnn (34 candidates, 3 evaluations each); far cheaper than whole
search_cost runs, and the same candidates for every rule.

    python benchmarks/search_cost_replay.py          # search_cost.py's cheap runs, seeds 1-3
    python benchmarks/search_cost_replay.py runs/search-cost/digits-cnn/cheap-v4-eta2-{1,2,3} --floors 0,2,3
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from _compress_common import finished_run  # importing it also installs the torchvision shim, as in every compress benchmark

import evoforge.compression.domain as compress_domain
from evoforge.api import open_store
from evoforge.compression.operators import at_fidelity
from evoforge.front import feasible_hypervolume
from evoforge.genome import genome_from_json
from evoforge.layout import RunLayout
from evoforge.pareto import reference_point
from evoforge.search.algorithms.base import WARM_START
from evoforge.search.domain import EvalContext, domain_from_spec
from evoforge.search.evaluation import Evaluation
from evoforge.search.fidelity import Fidelity

DEFAULT_RUNS = Path("runs/search-cost/digits-cnn")
FAR_OFF = 5.0  # quality points over the limit that count as a gross misjudgment


def replay(run: Path, floors: list[int], counts: list[int], seed: int) -> dict[str, Any]:
    with open_store(run, readonly=True) as store:
        config = store.config() or {}
        batch = store.batch(0) or {"offspring": []}
        stored = store.evaluations()
        genomes = {o["key"]: genome_from_json(store.genome(o["key"])) for o in batch["offspring"]}
    fidelity = Fidelity.from_dict(config["fidelity"])
    warm = [stored[o["key"]] for o in batch["offspring"] if o["operator"] == WARM_START and o["key"] in stored]
    screened = [o["key"] for o in batch["offspring"] if o["operator"] != WARM_START]
    with tempfile.TemporaryDirectory() as scratch:
        layout = RunLayout(Path(scratch) / "run")
        for folder in ("baseline", "inputs"):  # the run's trained baseline, its probe and its data
            if (run / folder).exists():
                shutil.copytree(run / folder, layout.root / folder)
        domain = domain_from_spec(config["domain"], layout)
        domain.prepare()
        domain.setup_worker()
        torch.set_num_threads(1)  # as in a worker of a 2-worker run
        rules = {"full": (1.0, None), **{f"floor {f}": (fidelity.rungs[0], f) for f in floors}}
        results: dict[str, dict[str, Evaluation]] = {name: {} for name in rules}
        original = compress_domain.at_fidelity
        try:
            for key in screened:
                for name, (fraction, floor) in rules.items():
                    compress_domain.at_fidelity = original if floor is None else functools.partial(at_fidelity, min_epochs=floor)
                    results[name][key] = domain.evaluate(genomes[key], EvalContext(seed=seed, fidelity=fraction))
        finally:
            compress_domain.at_fidelity = original
    objectives, limit = domain.objectives, domain.max_quality_drop
    ref = reference_point(objectives)

    def feasible(e: Evaluation) -> bool:
        return e.ok and all(v <= 0 for v in e.constraints.values())

    full = results["full"]
    good = [k for k in screened if feasible(full[k])]
    out: dict[str, Any] = {"screened": len(screened), "feasible_in_full": len(good),
                           "hv_warm_starts": feasible_hypervolume(warm, objectives, ref),
                           "hv_all_in_full": feasible_hypervolume([*warm, *full.values()], objectives, ref), "rules": {}}
    for name in rules:
        if name == "full":
            continue
        at_rung = results[name]
        row: dict[str, Any] = {
            "called_feasible": sum(feasible(at_rung[k]) for k in good),
            "far_off": sum(at_rung[k].ok and limit is not None and at_rung[k].objectives["quality_drop"] > limit + FAR_OFF for k in good),
            "false_feasible": sum(feasible(at_rung[k]) for k in screened if k not in good),
        }
        for count in counts:
            picked = fidelity.promoted(screened, at_rung, objectives, count)
            row[f"hv_promote_{count}"] = feasible_hypervolume([*warm, *(full[k] for k in picked)], objectives, ref)
        out["rules"][name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="finished multi-fidelity compress runs (default: search_cost.py's cheap runs)")
    parser.add_argument("--floors", default="0,2", help="epoch floors to compare (comma list)")
    parser.add_argument("--counts", default="7,14", help="promotion counts to replay (comma list)")
    parser.add_argument("--seed", type=int, default=7, help="the evaluation seed, the same for every rule")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    floors = [int(f) for f in args.floors.split(",")]
    counts = [int(c) for c in args.counts.split(",")]
    runs = [Path(r) for r in args.runs] or [DEFAULT_RUNS / f"cheap-{seed}" for seed in (1, 2, 3)]
    results = {}
    for run in runs:
        if not finished_run(run):
            raise SystemExit(f"{run} is not a finished run; give runs that search_cost.py finished")
        results[str(run)] = replay(run, floors, counts, args.seed)
        print(f"{run}: {json.dumps(results[str(run)])}", flush=True)
    print("\n| run | warm starts | all in full | rule | feasible in full called feasible | > 5 pt over | infeasible called feasible | "
          + " | ".join(f"HV promoting {c}" for c in counts) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(counts))
    for run, r in results.items():
        for name, row in r["rules"].items():
            hv = " | ".join(f"{row[f'hv_promote_{c}']:.3f}" for c in counts)
            print(f"| {Path(run).name} | {r['hv_warm_starts']:.3f} | {r['hv_all_in_full']:.3f} | {name} | "
                  f"{row['called_feasible']} of {r['feasible_in_full']} | {row['far_off']} | {row['false_feasible']} | {hv} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
