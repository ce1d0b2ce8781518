"""Screening replay: how well a screening rule picks, on the candidates a real run screened.

For each stored multi-fidelity compress run given, the candidates its first generation screened are
evaluated again: in full, and at the run's first rung under each rule. The rules: each epoch floor
in --floors (a screening that scales epochs; 0: plain scaling of every epoch count; 2: the default,
`SCREENING_MIN_EPOCHS`), and with --examples a screening that keeps every epoch and trains on the
rung's share of each (`screen_by="examples"`). Promotion is then replayed on those results (the
run's own rule, each --promote count), and each rule is scored by the hypervolume of the warm
starts' stored evaluations plus the promoted candidates' full ones, against the task's fixed
reference. Also reported: how many candidates feasible in full each rule calls feasible, how many it
puts more than 5 quality points over the limit, and its seconds per evaluation as a share of the
same candidate's full evaluation (median).

--full-from RUN takes the full evaluations from RUN instead (a finished full-fidelity run of the same
task, baseline and seed, such as search_cost.py's full-<seed>: the same seed draws the same first
generation), replays only the candidates both runs hold, and adds the run's own stored screenings as
the rule "stored". Evaluations use the runs' own candidate seeds and run in --workers processes, as
in a run. Minutes per run on digits-cnn (34 candidates, 3 evaluations each); far cheaper than whole
search_cost runs, and the same candidates for every rule.

    python benchmarks/search_cost_replay.py          # search_cost.py's cheap runs, seeds 1-3
    python benchmarks/search_cost_replay.py runs/search-cost/digits-cnn/cheap-v4-eta2-{1,2,3} --floors 0,2,3
    python benchmarks/search_cost_replay.py runs/search-cost/bert-tokens/cheap-front-1 \\
        --full-from runs/search-cost/bert-tokens/full-1 --floors "" --examples
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
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
from evoforge.search.engine import candidate_seed
from evoforge.search.evaluation import Evaluation
from evoforge.search.fidelity import Fidelity

DEFAULT_RUNS = Path("runs/search-cost/digits-cnn")
FAR_OFF = 5.0  # quality points over the limit that count as a gross misjudgment
Rule = tuple[float, int | None, str]  # (fidelity, epoch floor or None for the default, screen_by)

_DOMAIN: list[Any] = []  # this worker's domain


def _start_worker(run: str, scratch: str) -> None:
    """Build this process's domain on a copy of the run's baseline and inputs."""
    layout = RunLayout(Path(scratch) / f"run-{multiprocessing.current_process().pid}")
    for folder in ("baseline", "inputs"):  # the run's trained baseline, its probe and its data
        if (Path(run) / folder).exists():
            shutil.copytree(Path(run) / folder, layout.root / folder)
    with open_store(Path(run), readonly=True) as store:
        spec = (store.config() or {})["domain"]
    domain = domain_from_spec(spec, layout)
    domain.prepare()
    domain.setup_worker()
    _DOMAIN.append(domain)
    torch.set_num_threads(1)  # as in a worker of a 2-worker run


def _evaluate(genome_json: str, seed: int, rule: Rule) -> tuple[Evaluation, float]:
    """One evaluation under ``rule`` and its seconds."""
    fraction, floor, screen_by = rule
    original = compress_domain.at_fidelity
    compress_domain.at_fidelity = original if floor is None else functools.partial(at_fidelity, min_epochs=floor)
    domain = _DOMAIN[0]
    domain.screen_by = screen_by  # read by each evaluation; the rest of the domain is the same for every rule
    try:
        start = time.perf_counter()
        evaluation = domain.evaluate(genome_from_json(genome_json), EvalContext(seed=seed, fidelity=fraction))
        return evaluation, time.perf_counter() - start
    finally:
        compress_domain.at_fidelity = original


def replay(run: Path, floors: list[int], counts: list[int], examples: bool, full_from: Path | None, workers: int) -> dict[str, Any]:
    with open_store(run, readonly=True) as store:
        config = store.config() or {}
        batch = store.batch(0) or {"offspring": []}
        stored = store.evaluations()
        fidelity = Fidelity.from_dict(config["fidelity"])
        first_rung = store.screenings().get(fidelity.rungs[0], {})
        genomes = {o["key"]: store.genome(o["key"]) for o in batch["offspring"]}
    warm = [stored[o["key"]] for o in batch["offspring"] if o["operator"] == WARM_START and o["key"] in stored]
    screened = [o["key"] for o in batch["offspring"] if o["operator"] != WARM_START and o["key"] in first_rung]
    results: dict[str, dict[str, Evaluation]] = {}
    seconds: dict[str, dict[str, float]] = {}
    rules: dict[str, Rule] = {f"floor {f}": (fidelity.rungs[0], f, "epochs") for f in floors}
    if examples:
        rules["examples"] = (fidelity.rungs[0], None, "examples")
    if full_from is not None:
        with open_store(full_from, readonly=True) as store:
            in_full = store.evaluations()
        screened = [k for k in screened if k in in_full]
        results["full"] = {k: in_full[k] for k in screened}
        results["stored"] = {k: first_rung[k] for k in screened}
        seconds["full"] = {k: in_full[k].duration_s for k in screened}
        seconds["stored"] = {k: first_rung[k].duration_s for k in screened}
    else:
        rules = {"full": (1.0, None, "epochs"), **rules}
    jobs = [(name, key) for key in screened for name in rules]
    with tempfile.TemporaryDirectory() as scratch, concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(str(run), scratch)) as pool:
        futures = {pool.submit(_evaluate, genomes[key], candidate_seed(config["seed"], key), rules[name]): (name, key)
                   for name, key in jobs}
        for future in concurrent.futures.as_completed(futures):
            name, key = futures[future]
            results.setdefault(name, {})[key], seconds.setdefault(name, {})[key] = future.result()
    reference = domain_from_spec(config["domain"], RunLayout(run))
    objectives, limit = reference.objectives, reference.max_quality_drop
    ref = reference_point(objectives)

    def feasible(e: Evaluation) -> bool:
        return e.ok and all(v <= 0 for v in e.constraints.values())

    full = results["full"]
    good = [k for k in screened if feasible(full[k])]
    out: dict[str, Any] = {"screened": len(screened), "feasible_in_full": len(good),
                           "hv_warm_starts": feasible_hypervolume(warm, objectives, ref),
                           "hv_all_in_full": feasible_hypervolume([*warm, *full.values()], objectives, ref),
                           "full_s_median": statistics.median(seconds["full"].values()) if screened else None, "rules": {}}
    for name in results:
        if name == "full":
            continue
        at_rung = results[name]
        row: dict[str, Any] = {
            "called_feasible": sum(feasible(at_rung[k]) for k in good),
            "far_off": sum(at_rung[k].ok and limit is not None and at_rung[k].objectives["quality_drop"] > limit + FAR_OFF for k in good),
            "false_feasible": sum(feasible(at_rung[k]) for k in screened if k not in good),
            "share_of_full_s": statistics.median(seconds[name][k] / seconds["full"][k] for k in screened) if screened else None,
        }
        for count in counts:
            picked = fidelity.promoted(screened, at_rung, objectives, count)
            row[f"hv_promote_{count}"] = feasible_hypervolume([*warm, *(full[k] for k in picked)], objectives, ref)
        out["rules"][name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="finished multi-fidelity compress runs (default: search_cost.py's cheap runs)")
    parser.add_argument("--floors", default="0,2", help="epoch floors to compare (comma list; empty: none)")
    parser.add_argument("--examples", action="store_true", help="also screen by examples per epoch (screen_by='examples')")
    parser.add_argument("--full-from", default=None, help="a finished full-fidelity run to take the full evaluations from")
    parser.add_argument("--counts", default="7,14", help="promotion counts to replay (comma list)")
    parser.add_argument("--workers", type=int, default=2, help="evaluation processes (one thread each)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    floors = [int(f) for f in args.floors.split(",") if f.strip()]
    counts = [int(c) for c in args.counts.split(",")]
    runs = [Path(r) for r in args.runs] or [DEFAULT_RUNS / f"cheap-{seed}" for seed in (1, 2, 3)]
    full_from = Path(args.full_from) if args.full_from else None
    results = {}
    for run in [*runs, *([full_from] if full_from else [])]:
        if not finished_run(run):
            raise SystemExit(f"{run} is not a finished run; give runs that search_cost.py finished")
    for run in runs:
        results[str(run)] = replay(run, floors, counts, args.examples, full_from, args.workers)
        print(f"{run}: {json.dumps(results[str(run)])}", flush=True)
    print("\n| run | warm starts | all in full | rule | seconds / full (median) | feasible in full called feasible | > 5 pt over | "
          "infeasible called feasible | " + " | ".join(f"HV promoting {c}" for c in counts) + " |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(counts))
    for run, r in results.items():
        for name, row in r["rules"].items():
            hv = " | ".join(f"{row[f'hv_promote_{c}']:.3f}" for c in counts)
            share = "" if row["share_of_full_s"] is None else f"{row['share_of_full_s']:.2f}"
            print(f"| {Path(run).name} | {r['hv_warm_starts']:.3f} | {r['hv_all_in_full']:.3f} | {name} | {share} | "
                  f"{row['called_feasible']} of {r['feasible_in_full']} | {row['far_off']} | {row['false_feasible']} | {hv} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
