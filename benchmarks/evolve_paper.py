"""GEVO-ML at the paper's scale: MobileNet-V1 (width 1.0) on 32x32 colour images.

1. main (seed check 1): --seeds runs of --budget on mobilenet-img32, every edit kind, 2 workers,
   a 2-point validation-error ceiling. Per run: the front's best speedup (original time / variant
   time, the paper's measure) at <= 2 points test-accuracy drop, that member's time against the
   original in torch eager, torch.compile, ONNX Runtime and IREE -O3, variants per minute, the
   invalid rate and the compile-cache hit rate.
   The last contender is `compress` itself: a --compress-budget run on the same task in
   ONNX Runtime, and its fastest member at <= 2 points test drop.
2. ablation (seed check 2): one run of --ablation-budget per edit set (all; no resize; no
   type-changing resize; centered narrowing only; no block deletion; all with cost-weighted
   targets) and seed (--ablation-seeds, from --ablation-first-seed): the best speedup at <= 2
   points for each. With --side-by-side the chosen sets of one seed run at the same time, one
   process each with an equal share of --workers, so that every set meets the same load on a
   shared machine (the sets then compare with each other, not with runs that had every core).
3. scaling (seed check 3): seconds per variant for parse, edit + verify + print, compile and run
   on digits-mobilenet, mobilenet-img32 and torchvision's ResNet-50 at 32x32, and the share of
   random single edits that fail; compiled with the im2col flags, as flag tuning picks for these
   programs. Then (``resnet50``) a --resnet50-budget run of ``evolve`` on a trained ResNet-50 at
   32x32, as a user would bring it (`evoforge.evolve(module, data=...)`), --resnet50-seeds seeds: the best
   speedup at <= 2 points test drop and its seconds per variant. The weights are
   --resnet50-weights, written by `train_resnet50_img32.py` (trained here when missing).
4. IREE flags: the original compiled with IREE's defaults, -O3, data tiling and microkernels, and
   im2col (what the runs' flag tuning picks for convolutional programs) alone and with each, timed
   round-robin (what a user could get from IREE without evolving); and where one call's time goes,
   by dispatch kind, under the defaults and under im2col.
5. training programs: --train-seeds runs of --train-budget on digits-2fcnet-train: the best
   test-accuracy change at equal or lower training time.

    python benchmarks/evolve_paper.py [--budget 60m] [--seeds 3] [--first-seed 1] [--edit-targets uniform|cost] [--ablation-budget 20m]
        [--ablation-seeds 1] [--ablation-first-seed 1] [--side-by-side]
        [--ablations all,no-resize,no-type-changing-resize,centered-narrowing-only,no-block-deletion,all-cost-weighted-targets]
        [--train-budget 10m] [--compress-budget 60m]
        [--resnet50-budget 30m] [--resnet50-seeds 1] [--resnet50-first-seed 1] [--resnet50-branch-sweep 8]
        [--resnet50-weights PATH] [--crossover halves|anywhere]
        [--skip compress,ablation,flags,scaling,resnet50,train] [--root runs/evolve-paper]

Every run reuses the first one's trained baseline and exported program (``_template``), so the
baseline is trained once (about 6 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _compress_common import finished_run  # importing it also installs the torchvision shim, for ResNet-50
from _evolve_common import best_within, test_drop_pt

import evoforge
from evoforge.api import open_store
from evoforge.layout import RunLayout
from evoforge.mlir.edits import EDIT_KINDS
from evoforge.mlir.flag_tuning import FLAG_SETS, has_convolution, load_tuning
from evoforge.mlir.sources import read_prepared
from evoforge.report import run_summary

TASK = "mobilenet-img32"
NO_RESIZE = tuple(k for k in EDIT_KINDS if k not in ("resize", "resize_importance"))
ABLATIONS: dict[str, dict[str, Any]] = {
    "all": {"edit_kinds": EDIT_KINDS},
    "no resize": {"edit_kinds": NO_RESIZE},
    "no type-changing resize": {"edit_kinds": (*NO_RESIZE, "resize_fill")},
    "centered narrowing only": {"edit_kinds": tuple(k for k in EDIT_KINDS if k != "resize_importance")},
    "no block deletion": {"edit_kinds": tuple(k for k in EDIT_KINDS if k != "delete_block")},
    "all, cost-weighted targets": {"edit_kinds": EDIT_KINDS, "edit_targets": "cost"},
}


def ablation_slug(name: str) -> str:
    """The edit set's name as its run folder and ``--ablations`` spell it."""
    return name.replace(" ", "-").replace(",", "")


def chosen_ablations(spec: str) -> dict[str, dict[str, Any]]:
    """The edit sets named in a comma list of slugs, in ABLATIONS' order."""
    wanted = set(filter(None, spec.split(",")))
    unknown = wanted - {ablation_slug(name) for name in ABLATIONS}
    if unknown:
        raise SystemExit(f"--ablations: unknown edit set(s) {sorted(unknown)}; valid: "
                         + ", ".join(ablation_slug(name) for name in ABLATIONS))
    return {name: options for name, options in ABLATIONS.items() if ablation_slug(name) in wanted}


SECTIONS = ("main", "compress", "ablation", "flags", "scaling", "resnet50", "train")


def ablation_run_dir(root: Path, name: str, seed: int) -> Path:
    """Seed 1 keeps the folder name of the runs made before ablations had seeds."""
    return root / (f"ablation-{ablation_slug(name)}" + ("" if seed == 1 else f"-seed{seed}"))


def prepare_template(template: Path, program: str) -> None:
    """Write what the first run would leave in ``template`` (the program with its tuned flags and
    the source model's times in the other runtimes, and the trained baseline), so that runs
    started at the same time share one baseline and one flag choice."""
    if not RunLayout(template).program.exists():
        from evoforge.mlir.api import prepare_program

        prepare_program(program, RunLayout(template), tune_flags=True, compare_runtimes="all")


def ablation_runs(root: Path, template: Path, sets: dict[str, dict[str, Any]], seeds: range, budget: str,
                  workers: int, side_by_side: bool) -> dict[str, dict[int, Any]]:
    """Each edit set's run stats by seed; with ``side_by_side`` a seed's unfinished sets run at
    once, each in its own process of this script with an equal share of ``workers``."""
    results: dict[str, dict[int, Any]] = {name: {} for name in sets}
    for seed in seeds:
        waiting = [name for name in sets if not finished_run(ablation_run_dir(root, name, seed))]
        if side_by_side and len(waiting) > 1:
            prepare_template(template, TASK)
            share = max(1, workers // len(waiting))
            children = {name: subprocess.Popen([sys.executable, __file__, "--skip", ",".join(s for s in SECTIONS if s != "ablation"),
                                                "--ablations", ablation_slug(name), "--ablation-seeds", "1",
                                                "--ablation-first-seed", str(seed), "--ablation-budget", budget,
                                                "--workers", str(share), "--root", str(root)])
                        for name in waiting}
            failed = [name for name, child in children.items() if child.wait() != 0]
            if failed:
                raise SystemExit(f"ablation seed {seed}: the side-by-side run(s) of {failed} failed; see their output above")
        for name, options in sets.items():
            run = evolve_run(ablation_run_dir(root, name, seed), template, TASK,
                             budget=budget, workers=workers, seed=seed, **options)
            results[name][seed] = run_stats(run)
            print(f"ablation {name} seed {seed}: {json.dumps(results[name][seed], default=str)}", flush=True)
    return results


CONTENDERS = ("iree_o3", "torch_eager", "torch_compile", "onnxruntime", "openvino")


def evolve_run(run: Path, template: Path, program: str, *, ceiling: float | None = 2.0, **options: Any) -> Path:
    """Run ``evolve`` into ``run`` (kept when finished earlier), starting from ``template``'s
    prepared program and baseline when there is one, and fill the template from the first run."""
    if finished_run(run):
        return run
    shutil.rmtree(run, ignore_errors=True)
    layout, saved = RunLayout(run), RunLayout(template)
    for folder in ("program", "baseline"):
        if (saved.root / folder).exists():
            shutil.copytree(saved.root / folder, layout.root / folder)
    evoforge.evolve(program, run_dir=run, pop_size=16, max_error_increase=ceiling, **options)
    for folder in ("program", "baseline"):
        if (layout.root / folder).exists() and not (saved.root / folder).exists():
            shutil.copytree(layout.root / folder, saved.root / folder)
    return run


def run_stats(run: Path) -> dict[str, Any]:
    """Throughput, failures and the best front member at <= 2 points test drop of a finished run."""
    with open_store(run, readonly=True) as store:
        evaluations = store.evaluations()
        generations = store.generations()
    wall = float(generations[-1]["elapsed_s"]) if generations else 0.0
    kinds = collections.Counter(e.metrics.get("failure_kind", e.status.value) for e in evaluations.values() if not e.ok)
    hits = [bool(e.metrics["compile_cache_hit"]) for e in evaluations.values() if "compile_cache_hit" in e.metrics]
    summary = run_summary(run)
    base = summary["final"]["baseline"]["accuracy"]
    best = best_within(summary)
    chosen: dict[str, Any] = {}
    if best is not None:
        metrics = evaluations[best["key"]].metrics
        retimed = best.get("test_runtime_ratio") or retimed_ratio(run, best["key"], evaluations[best["key"]])
        chosen = {"runtime_ratio": best["runtime_ratio"], "speedup": 1 / best["runtime_ratio"],
                  "retimed_ratio": retimed, "retimed_speedup": 1 / retimed,
                  "test_drop_pt": test_drop_pt(summary, best), "edits": metrics.get("edits"),
                  "description": best.get("description", ""),
                  **{f"vs_{c}": metrics[f"vs_{c}"] for c in CONTENDERS if f"vs_{c}" in metrics}}
    tuning = load_tuning(RunLayout(run).program)
    return {"flags": tuning.chosen if tuning else "not tuned", "tuning_speedup": tuning.speedup if tuning else 1.0,
            "wall_min": wall / 60, "evaluated": len(evaluations), "per_minute": len(evaluations) / max(wall / 60, 1e-9),
            "invalid_rate": sum(kinds.values()) / max(1, len(evaluations)), "invalid_by_kind": dict(kinds),
            "compile_cache_hit_rate": sum(hits) / max(1, len(hits)), "baseline_test_accuracy": base,
            "best_within_2pt": chosen}


def retimed_ratio(run: Path, key: str, evaluation: Any) -> float:
    """The member re-timed as a run now does when it ends (`EvolveDomain.finalize`), for runs
    finished before that."""
    from evoforge.search.domain import domain_from_spec

    with open_store(run, readonly=True) as store:
        spec = store.config()["domain"]
    domain = domain_from_spec(spec, RunLayout(run))
    return float(domain.finalize([(key, evaluation)])[key]["runtime_ratio"])


def compress_comparison(root: Path, budget: str, workers: int) -> dict[str, Any]:
    """Seed check 1's last contender: a `compress` run of ``budget`` (seed 1) on the same task, in
    ONNX Runtime with a 2-point limit, from the evolve runs' trained baseline (the same task, data
    and seed give the same cache key in both commands). Its fastest front member at <= 2 points
    test drop, with its time per batch of 32 on one thread (each of the 2 workers times on one)."""
    run = root / "compress-1"
    if not finished_run(run):
        shutil.rmtree(run, ignore_errors=True)
        trained = RunLayout(root / "_template").baseline / "baseline.pt"
        if trained.exists():
            RunLayout(run).baseline.mkdir(parents=True)
            shutil.copyfile(trained, RunLayout(run).baseline / "baseline.pt")
        evoforge.compress(TASK, run_dir=run, budget=budget, workers=workers, seed=1, constraints={"max_quality_drop": 2.0})
    summary = run_summary(run)
    base = summary["final"]["baseline"]["accuracy"]
    within = [row for row in summary["front"]
              if row.get("test_accuracy") is not None and 100 * (base - row["test_accuracy"]) <= 2.0]
    with open_store(run, readonly=True) as store:
        evaluations = store.evaluations()
    out: dict[str, Any] = {"evaluated": len(evaluations), "baseline_test_accuracy": base}
    if within:
        best = min(within, key=lambda row: row["latency_ratio"])
        metrics = evaluations[best["key"]].metrics
        out.update(latency_ratio=best["latency_ratio"], test_drop_pt=100 * (base - best["test_accuracy"]),
                   ms=metrics.get("latency_batch_ms"), original_ms=metrics.get("baseline_latency_batch_ms"),
                   description=best.get("pipeline") or best.get("description", ""))
    return out


def comparisons(run: Path) -> dict[str, float]:
    path = RunLayout(run).program / "comparisons.json"
    return json.loads(path.read_text())["ms"] if path.exists() else {}


def stage_costs(program: Any, batch: list[np.ndarray], *, variants: int, seed: int = 0) -> dict[str, Any]:
    """Median seconds to parse, edit (+ verify + print), compile and run one variant of
    ``program`` with one random edit, over ``variants`` variants, and the share of them that failed."""
    from evoforge.errors import EvoforgeError
    from evoforge.mlir.iree_runner import Worker, compile_program, run_program
    from evoforge.mlir.mutate import Session, apply_edits, random_edit

    rng = np.random.default_rng(seed)
    flags = FLAG_SETS["im2col"].flags if has_convolution(program.text) else ()  # as flag tuning picks on these programs
    times: dict[str, list[float]] = {"parse": [], "edit_verify_print": [], "compile": [], "run": []}
    failed: collections.Counter[str] = collections.Counter()
    t = time.perf_counter()
    with Session(program):
        times["parse"].append(time.perf_counter() - t)
    t = time.perf_counter()
    original = compile_program(program.text, input_type=program.input_type, extra_flags=flags)
    times["compile_original"] = [time.perf_counter() - t]
    with Worker() as worker:
        t = time.perf_counter()
        run_program(original, [batch], worker=worker, function=program.entry, timeout_s=300)
        times["run_original"] = [time.perf_counter() - t]
        for _ in range(variants):
            kind = str(rng.choice([k for k in EDIT_KINDS if program.level == "torch" or k != "resize_importance"]))
            try:
                edit = random_edit(program, rng, kind)
                t = time.perf_counter()
                text = apply_edits(program, [edit])
                times["edit_verify_print"].append(time.perf_counter() - t)
                t = time.perf_counter()
                vmfb = compile_program(text, input_type=program.input_type, extra_flags=flags, timeout_s=600)
                times["compile"].append(time.perf_counter() - t)
                t = time.perf_counter()
                run_program(vmfb, [batch], worker=worker, function=program.entry, timeout_s=300)
                times["run"].append(time.perf_counter() - t)
            except EvoforgeError as exc:
                failed[f"{kind}: {type(exc).__name__}"] += 1
    return {"median_s": {k: statistics.median(v) for k, v in times.items() if v}, "variants": variants,
            "invalid_rate": sum(failed.values()) / max(1, variants), "failed": dict(failed),
            "text_mb": len(program.text) / 2**20}


def scaling(root: Path, variants: int) -> dict[str, Any]:
    """`stage_costs` on the two built-in MobileNets and torchvision's ResNet-50 at 32x32."""
    import torch

    from evoforge.mlir.program import from_torch

    out: dict[str, Any] = {}
    for name in ("digits-mobilenet", TASK):
        run = root / f"scaling-{name}"
        if not RunLayout(run).program.exists():
            from evoforge.mlir.api import prepare_program

            template = root / ("_template" if name == TASK else "_template-digits")
            if RunLayout(template).program.exists():
                shutil.copytree(RunLayout(template).program, RunLayout(run).program)
            else:
                prepare_program(name, RunLayout(run))
        program = read_prepared(RunLayout(run).program)
        batch = np.load(RunLayout(run).program / "data.npz")["x_val"][: program.inputs[0].shape[0]]
        out[name] = stage_costs(program, [batch], variants=variants)
        print(name, json.dumps(out[name]), flush=True)
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=10).eval()
    example = torch.randn(32, 3, 32, 32)
    t = time.perf_counter()
    try:
        program = from_torch(model, example)
    except Exception as exc:  # noqa: BLE001 - the export failing is the finding
        out["resnet50"] = {"export_error": f"{type(exc).__name__}: {exc}"[:500]}
        return out
    export_s = time.perf_counter() - t
    try:
        out["resnet50"] = {"export_s": export_s, **stage_costs(program, [example.numpy()], variants=variants)}
    except Exception as exc:  # noqa: BLE001
        out["resnet50"] = {"export_s": export_s, "error": f"{type(exc).__name__}: {exc}"[:500]}
    print("resnet50", json.dumps(out["resnet50"]), flush=True)
    return out


def resnet50_run(root: Path, weights: Path, budget: str, workers: int, seed: int, branch_sweep: int = 8,
                 crossover: str = "halves") -> dict[str, Any]:
    """Seed check 3's search: ``evolve`` for ``budget`` on torchvision's ResNet-50 (10 classes,
    ``weights``) at 32x32 with ``img32``'s validation and test splits, as a user would run it
    (``branch_sweep`` and ``crossover`` other than evolve's defaults go to their own run folder)."""
    import torch
    import torchvision
    from train_resnet50_img32 import img32_splits, train_and_save

    data = root / "img32.npz"
    splits = img32_splits() if not (weights.exists() and data.exists()) else None
    if not weights.exists():
        print(f"trained ResNet-50: {json.dumps(train_and_save(weights, splits=splits))}", flush=True)
    if splits is not None and not data.exists():
        np.savez(data, x_val=splits["val"][0], y_val=splits["val"][1], x_test=splits["test"][0], y_test=splits["test"][1])
    model = torchvision.models.resnet50(num_classes=10)
    model.load_state_dict(torch.load(weights))
    name = "resnet50" + ("" if branch_sweep == 8 else f"-sweep{branch_sweep}") + ("" if crossover == "halves" else f"-{crossover}")
    name += f"-{seed}"
    run = evolve_run(root / name, root / "_template-resnet50", model.eval(), data=str(data),
                     example_input=torch.zeros(32, 3, 32, 32), budget=budget, workers=workers, seed=seed,
                     branch_sweep=branch_sweep, crossover=crossover)
    with open_store(run, readonly=True) as store:
        done = [e for e in store.evaluations().values() if e.ok]
    per_variant = {"compile_s": statistics.median(float(e.metrics["compile_s"]) for e in done),
                   "run_s": statistics.median(float(e.metrics["run_s"]) for e in done),
                   "evaluation_s": statistics.median(e.duration_s for e in done)} if done else {}
    return {**run_stats(run), "median_s_per_variant": per_variant, "comparisons_ms": comparisons(run)}


IREE_FLAG_SETS = {
    "IREE's defaults": [],
    "-O3": ["--iree-opt-level=O3"],
    "data tiling + ukernels": ["--iree-opt-data-tiling=true", "--iree-llvmcpu-enable-ukernels=all"],
    "im2col (what flag tuning picks here)": list(FLAG_SETS["im2col"].flags),
    "im2col + -O3": [*FLAG_SETS["im2col"].flags, "--iree-opt-level=O3"],
    "im2col + data tiling + ukernels": [*FLAG_SETS["im2col"].flags, "--iree-opt-data-tiling=true",
                                        "--iree-llvmcpu-enable-ukernels=all"],
}


def iree_flag_times(program_dir: Path, rounds: int = 15) -> dict[str, Any]:
    """The original program compiled with each of `IREE_FLAG_SETS`, timed round-robin on one batch,
    single-threaded (``local-sync``, as variants are timed): median ms and compile seconds."""
    from evoforge.mlir.iree_runner import compile_program, time_round_robin

    program = read_prepared(program_dir)
    batch = np.load(program_dir / "data.npz")["x_val"][: program.inputs[0].shape[0]]
    vmfbs, compile_s = {}, {}
    for name, flags in IREE_FLAG_SETS.items():
        t = time.perf_counter()
        vmfbs[name] = compile_program(program.text, input_type=program.input_type, extra_flags=flags, timeout_s=600)
        compile_s[name] = time.perf_counter() - t
    times = time_round_robin(list(vmfbs.values()), "local-sync", program.entry, [batch], rounds)
    return {name: {"ms": 1000 * statistics.median(v), "compile_s": compile_s[name]} for name, v in zip(vmfbs, times)}


def dispatch_profile(program_dir: Path, flags: list[str]) -> dict[str, float]:
    """Milliseconds per dispatch kind (IREE's dispatch names: ``conv`` for the convolutions left
    after im2col, which here are the depthwise ones, ``matmul_like`` for the rest, ...) in one
    single-threaded call of the original compiled with ``flags``, from IREE's host-execution
    profile (``iree-run-module`` and ``iree-profile``, both in the iree-base-runtime wheel)."""
    import re
    import subprocess
    import sys
    import tempfile

    from evoforge.mlir.iree_runner import compile_program

    program = read_prepared(program_dir)
    tools = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="evoforge-profile-") as tmp:
        vmfb, batch, profile = Path(tmp) / "m.vmfb", Path(tmp) / "x.npy", Path(tmp) / "p.ireeprof"
        vmfb.write_bytes(compile_program(program.text, input_type=program.input_type, extra_flags=flags, timeout_s=600))
        np.save(batch, np.load(program_dir / "data.npz")["x_val"][: program.inputs[0].shape[0]])
        subprocess.run([str(tools / "iree-run-module"), "--device=local-sync", f"--module={vmfb}", f"--function={program.entry}",
                        f"--input=@{batch}", "--device_profiling_mode=host-execution", f"--device_profiling_output={profile}"],
                       check=True, capture_output=True)
        stats = subprocess.run([str(tools / "iree-profile"), "statistics", str(profile)], check=True, capture_output=True,
                               text=True).stdout
    kinds: dict[str, float] = collections.defaultdict(float)
    for match in re.finditer(r"host_execute \S+?_dispatch_\d+_(\S+) .*? total=([\d.]+) (ms|us)", stats):
        words = itertools.takewhile(str.isalpha, match.group(1).split("_"))  # conv_32x4x4x512x3x3_f32 -> conv
        kinds["_".join(words)] += float(match.group(2)) / (1000.0 if match.group(3) == "us" else 1.0)
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def best_training_change(run: Path) -> dict[str, Any]:
    summary = run_summary(run)
    base = summary["final"]["baseline"]["accuracy"]
    best = None
    for row in summary["front"]:
        acc = row.get("test_accuracy")
        if acc is not None and row["runtime_ratio"] <= 1.0 and (best is None or acc > best[0]):
            best = (acc, row["runtime_ratio"])
    return {"baseline_test_accuracy": base, "change_pt": None if best is None else 100 * (best[0] - base),
            "time_ratio": None if best is None else best[1]}


def print_tables(results: dict[str, Any]) -> None:
    main_runs = results.get("main", {})
    if main_runs:
        print(f"\n## {TASK}: best speedup at <= 2 points test drop\n")
        print("| seed | speedup (runtime ratio) | re-timed speedup | test drop pt | vs IREE -O3 | vs torch eager | vs torch.compile "
              "| vs ONNX Runtime | vs OpenVINO | evaluated | per min | invalid | compile-cache hits | flags (x over IREE's defaults) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for seed, r in main_runs.items():
            b = r["best_within_2pt"]
            vs = " | ".join(f"{b[f'vs_{c}']:.3f}" if f"vs_{c}" in b else "-" for c in CONTENDERS)
            head = (f"{b['speedup']:.2f}x ({b['runtime_ratio']:.3f}) | {b['retimed_speedup']:.2f}x | {b['test_drop_pt']:.2f}"
                    if b else "none | - | -")
            print(f"| {seed} | {head} | {vs} | {r['evaluated']} | {r['per_minute']:.1f} | {r['invalid_rate']:.0%} "
                  f"| {r['compile_cache_hit_rate']:.0%} | {r.get('flags', '-')} ({r.get('tuning_speedup', 1.0):.2f}x) |")
        speedups = [r["best_within_2pt"].get("speedup", 1.0) for r in main_runs.values()]
        print(f"\nmedian speedup {statistics.median(speedups):.2f}x; target >= 1.9x: "
              f"{'met' if statistics.median(speedups) >= 1.9 else 'NOT met'}")
    if results.get("comparisons_ms"):
        print("\noriginal at batch 32, ms (one thread): " + ", ".join(f"{k} {v:.1f}" for k, v in results["comparisons_ms"].items()))
    compressed = results.get("compress")
    if compressed:
        print(f"\ncompress, {compressed['evaluated']} evaluations: " + (
            f"fastest member at <= 2 pt test drop: {compressed['description']}, latency ratio {compressed['latency_ratio']:.3f} "
            f"in ONNX Runtime ({compressed['ms']:.2f} ms per batch of 32 against the original's {compressed['original_ms']:.2f}), "
            f"test drop {compressed['test_drop_pt']:.2f} pt" if "ms" in compressed else "no member within 2 points"))
        evolved = [r["best_within_2pt"] for r in main_runs.values() if r.get("best_within_2pt")]
        iree_ms = (results.get("comparisons_ms") or {}).get("iree")
        if "ms" in compressed and evolved and iree_ms:
            ratio = statistics.median(b["retimed_ratio"] for b in evolved) * iree_ms / compressed["ms"]
            print(f"evolved variant (median re-timed) against that member: {ratio:.1f}x its time")
    if results.get("iree_flags"):
        print("\n| original compiled with | ms per batch of 32, one thread | compile s |\n|---|---|---|")
        for name, r in results["iree_flags"].items():
            print(f"| {name} | {r['ms']:.1f} | {r['compile_s']:.1f} |")
    for name, kinds in (results.get("dispatch_ms") or {}).items():
        print(f"\ndispatch time by kind, original compiled with {name}, one call: "
              + ", ".join(f"{kind} {ms:.1f} ms" for kind, ms in kinds.items()))
    if results.get("ablation"):
        print("\n| edit set | seed | best speedup at <= 2 pt | re-timed | test drop pt | evaluated | invalid |")
        print("|---|---|---|---|---|---|---|")
        for name, by_seed in results["ablation"].items():
            for seed, r in by_seed.items():
                b = r["best_within_2pt"]
                best = f"{b['speedup']:.2f}x | {b['retimed_speedup']:.2f}x | {b['test_drop_pt']:.2f}" if b else "none | - | -"
                print(f"| {name} | {seed} | {best} | {r['evaluated']} | {r['invalid_rate']:.0%} |")
            retimed = [r["best_within_2pt"]["retimed_speedup"] if r["best_within_2pt"] else 1.0 for r in by_seed.values()]
            if len(retimed) > 1:
                print(f"| {name} | median | | {statistics.median(retimed):.2f}x | | | |")
    if results.get("scaling"):
        print("\n| program | MLIR MB | parse s | edit+verify+print s | compile s | run s (batch 32) | invalid |")
        print("|---|---|---|---|---|---|---|")
        for name, r in results["scaling"].items():
            m = r.get("median_s")
            if m is None:
                print(f"| {name} | {r} |")
                continue
            print(f"| {name} | {r['text_mb']:.1f} | {m.get('parse', 0):.2f} | {m.get('edit_verify_print', float('nan')):.2f} | "
                  f"{m.get('compile', m.get('compile_original', 0)):.1f} | {m.get('run', m.get('run_original', 0)):.3f} | "
                  f"{r['invalid_rate']:.0%} |")
    for seed, r50 in (results.get("resnet50") or {}).items():
        b = r50["best_within_2pt"]
        print(f"\nResNet-50 at 32x32, seed {seed} (baseline test accuracy {r50['baseline_test_accuracy']:.4f}), "
              f"{r50['evaluated']} variants in {r50['wall_min']:.0f} min, invalid {r50['invalid_rate']:.0%}, per variant (median s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in r50["median_s_per_variant"].items()))
        print("best at <= 2 pt test drop: " + (f"{b['speedup']:.2f}x ({b['runtime_ratio']:.3f}), re-timed {b['retimed_speedup']:.2f}x, "
                                                f"test drop {b['test_drop_pt']:.2f} pt, {b['description']}" if b else "none"))
        if r50["comparisons_ms"]:
            print("original at batch 32, ms (one thread): " + ", ".join(f"{k} {v:.1f}" for k, v in r50["comparisons_ms"].items()))
    if results.get("train"):
        changes = [r["change_pt"] for r in results["train"].values() if r["change_pt"] is not None]
        print(f"\ntraining program: test-accuracy change at equal or lower training time per seed: "
              f"{[r['change_pt'] for r in results['train'].values()]}; median "
              f"{statistics.median(changes) if changes else None}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="60m")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1, help="the main runs' seeds are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--ablation-budget", default="20m")
    parser.add_argument("--ablation-seeds", type=int, default=1)
    parser.add_argument("--ablation-first-seed", type=int, default=1, help="the ablation runs' seeds start here")
    parser.add_argument("--side-by-side", action="store_true",
                        help="run the edit sets of each ablation seed at the same time, sharing --workers")
    parser.add_argument("--ablations", default=",".join(ablation_slug(name) for name in ABLATIONS),
                        help="comma list of the edit sets to run: " + ", ".join(ablation_slug(name) for name in ABLATIONS))
    parser.add_argument("--train-budget", default="10m")
    parser.add_argument("--compress-budget", default="60m", help="the compress run that seed check 1 compares against")
    parser.add_argument("--train-seeds", type=int, default=3)
    parser.add_argument("--scaling-variants", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--crossover", default="halves",
                        help="evolve's crossover cut for the main, training and ResNet-50 runs: halves or anywhere "
                        "(anywhere runs go to their own folders)")
    parser.add_argument("--edit-targets", default="uniform", help="how the main runs' edits draw their targets: uniform or cost")
    parser.add_argument("--resnet50-budget", default="30m")
    parser.add_argument("--resnet50-seeds", type=int, default=1)
    parser.add_argument("--resnet50-first-seed", type=int, default=1, help="the ResNet-50 runs' seeds start here")
    parser.add_argument("--resnet50-branch-sweep", type=int, default=8, help="evolve's branch_sweep for the ResNet-50 runs (0: off)")
    parser.add_argument("--resnet50-weights", default=None, help="state dict from train_resnet50_img32.py (default ROOT/resnet50-img32.pt)")
    parser.add_argument("--skip", default="", help="comma list of: " + ", ".join(SECTIONS))
    parser.add_argument("--root", default="runs/evolve-paper")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    root, skip = Path(args.root), set(filter(None, args.skip.split(",")))
    template = root / "_template"
    results: dict[str, Any] = {}
    cut = "" if args.crossover == "halves" else f"{args.crossover}-"
    if "main" not in skip:
        results["main"] = {}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            run = evolve_run(root / f"all-{cut}{seed}", template, TASK, budget=args.budget, workers=args.workers, seed=seed,
                             edit_targets=args.edit_targets, crossover=args.crossover)
            results["main"][seed] = run_stats(run)
            print(f"seed {seed}: {json.dumps(results['main'][seed], default=str)}", flush=True)
        results["comparisons_ms"] = comparisons(root / f"all-{cut}{args.first_seed}")
    if "compress" not in skip:
        results["compress"] = compress_comparison(root, args.compress_budget, args.workers)
        print(f"compress: {json.dumps(results['compress'], default=str)}", flush=True)
    if "ablation" not in skip:
        seeds = range(args.ablation_first_seed, args.ablation_first_seed + args.ablation_seeds)
        results["ablation"] = ablation_runs(root, template, chosen_ablations(args.ablations), seeds,
                                            args.ablation_budget, args.workers, args.side_by_side)
    if "flags" not in skip:
        results["iree_flags"] = iree_flag_times(RunLayout(template).program)
        print(f"IREE flags: {json.dumps(results['iree_flags'])}", flush=True)
        results["dispatch_ms"] = {name: dispatch_profile(RunLayout(template).program, IREE_FLAG_SETS[name])
                                  for name in ("IREE's defaults", "im2col (what flag tuning picks here)")}
        print(f"dispatch kinds, ms: {json.dumps(results['dispatch_ms'])}", flush=True)
    if "train" not in skip:
        results["train"] = {}
        for seed in range(1, args.train_seeds + 1):
            run = evolve_run(root / f"train-{cut}{seed}", root / "_template-train", "digits-2fcnet-train",
                             ceiling=None, budget=args.train_budget, workers=args.workers, seed=seed, crossover=args.crossover)
            results["train"][seed] = {**best_training_change(run), **run_stats_train(run)}
            print(f"train seed {seed}: {json.dumps(results['train'][seed], default=str)}", flush=True)
    if "scaling" not in skip:
        results["scaling"] = scaling(root, args.scaling_variants)
    if "resnet50" not in skip:
        weights = Path(args.resnet50_weights) if args.resnet50_weights else root / "resnet50-img32.pt"
        results["resnet50"] = {}
        for seed in range(args.resnet50_first_seed, args.resnet50_first_seed + args.resnet50_seeds):
            results["resnet50"][seed] = resnet50_run(root, weights, args.resnet50_budget, args.workers, seed,
                                                     args.resnet50_branch_sweep, args.crossover)
            print(f"resnet50 seed {seed}: {json.dumps(results['resnet50'][seed], default=str)}", flush=True)
    print_tables(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


def run_stats_train(run: Path) -> dict[str, Any]:
    with open_store(run, readonly=True) as store:
        evaluations = store.evaluations()
    return {"evaluated": len(evaluations), "invalid_rate": sum(not e.ok for e in evaluations.values()) / max(1, len(evaluations))}


if __name__ == "__main__":
    main()
