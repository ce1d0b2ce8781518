"""Everything the HTML report shows about one run, read from its store as JSON-ready data.

`collect_run` reads a run without changing it. Hypervolume curves are recomputed from the stored
evaluations in the order they were made, so runs compared in one report share one reference
point: the domain's fixed one, else the one given (the first run's working reference).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.front import Front, feasible_hypervolume
from evoforge.pareto import Objective, violation
from evoforge.search.evaluation import Evaluation
from evoforge.search.minimize import MINIMIZED_FROM, MINIMIZED_META, MINIMIZED_TO, minimize_links, shorter_variants

MEMBER_METRICS = (
    "latency_b1_ms", "latency_batch_ms", "batch", "throughput", "latency_ratio_b1", "latency_ratio_batch",
    "latency_vs_eager", "latency_vs_best_fp32", "size_bytes", "size_ratio", "params", "params_ratio", "macs", "macs_ratio", "runtime",
    "runtime_ms", "original_runtime_ms", "first_runtime_ratio", "second_runtime_ratio", "speedup", "compile_cache_hit", "cache_hit",
    "vs_torch_eager", "vs_torch_compile", "vs_onnxruntime", "vs_openvino", "vs_iree_o3",
    "compress_s", "export_s", "load_s", "compile_s", MINIMIZED_FROM, MINIMIZED_TO,
)
"""Metrics the members table shows when a domain reports them (besides objectives and test numbers)."""
CURVE_POINTS = 400
"""Most points of a hypervolume-against-evaluations curve."""
SERIES_METRICS = ("val_loss_curve", "latency_rounds_b1", "latency_rounds_batch")
"""List-valued metrics shown in a member's detail view."""


def collect_run(run_dir: str | Path, reference: np.ndarray | None = None) -> dict[str, Any]:
    """The report data of ``run_dir``: headline, objectives, every evaluation, the front, the
    progress per generation, feature shares and per-member details. ``reference`` (minimization
    space) overrides the run's own hypervolume reference."""
    from evoforge.api import open_store
    from evoforge.genome import genome_from_json
    from evoforge.layout import RunLayout
    from evoforge.report.text import run_reference, run_summary
    from evoforge.search.domain import domain_from_spec

    run_dir = Path(run_dir)
    summary = run_summary(run_dir)
    with open_store(run_dir, readonly=True) as store:
        config = store.config()
        if config is None:
            raise ValueError(f"{run_dir} holds no run yet")
        evaluations = store.evaluations()
        generation_of = store.evaluation_generations()
        generations = store.generations()
        genomes = {k: genome_from_json(store.genome(k)) for k in evaluations}
        stored_reference = store.meta("reference")
        finished = store.meta("finished")
        shorter = shorter_variants(store.meta(MINIMIZED_META) or {})
    domain = domain_from_spec(config["domain"], RunLayout(run_dir))
    objectives = domain.objectives
    if reference is None:
        reference = run_reference(stored_reference, objectives)
    front = Front.from_evaluations(evaluations, genomes, objectives)
    front_keys = {m.key for m in front}
    knee = front.pick().key if len(front) and front.feasible else None
    final = summary.get("final") or {}
    baseline_test = final.get("baseline", {})

    points = []
    ids = {key: number for number, key in enumerate(evaluations, start=1)}
    for number, (key, evaluation) in enumerate(evaluations.items(), start=1):
        genome = genomes[key]
        point: dict[str, Any] = {
            "id": number, "key": key, "status": evaluation.status.value, "reason": evaluation.reason,
            "generation": generation_of.get(key), "objectives": _finite(evaluation.objectives),
            "feasible": evaluation.ok and violation(evaluation.constraints) <= 0, "front": key in front_keys,
            "knee": key == knee, "description": domain.describe(genome),
            "metrics": {k: evaluation.metrics[k] for k in MEMBER_METRICS if _scalar(evaluation.metrics.get(k))},
            "features": domain.genome_features(genome) if evaluation.ok else {},
        }
        point["metrics"].update(minimize_links(key, evaluation.metrics, ids, shorter))
        if key in final:
            point["test"] = final[key]
            point["test_delta"] = {k: v - baseline_test[k] for k, v in final[key].items() if k in baseline_test}
        if key in front_keys:
            point["details"] = domain.member_details(genome)
            point["series"] = {k: evaluation.metrics[k] for k in SERIES_METRICS if evaluation.metrics.get(k)}
        points.append(point)

    return {
        "run": str(run_dir),
        "name": run_dir.name,
        "domain": config["domain"]["name"],
        "algorithm": config["algorithm"]["name"],
        "headline": summary["headline"],
        "objectives": [{"name": o.name, "direction": o.direction} for o in objectives],
        "baseline": domain.baseline_objectives(),
        "baseline_test": baseline_test,
        "points": points,
        "progress": progress(evaluations, generations, generation_of, objectives, reference, finished),
        "features": feature_shares(points),
        "reference": None if reference is None else [float(v) for v in reference],
    }


def progress(
    evaluations: dict[str, Evaluation],
    generations: Sequence[dict[str, Any]],
    generation_of: dict[str, int],
    objectives: Sequence[Objective],
    reference: np.ndarray | None,
    finished: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The hypervolume of every feasible evaluation so far (against ``reference``) after each
    evaluation (``curve``: at most `CURVE_POINTS` points), and per generation: evaluations so
    far, wall seconds, that hypervolume, failures, and operator rates where the algorithm
    adapts them. A run that ``finished`` (the store's record) inside a generation gets a last
    row for that generation as far as it went (``partial``): on a model whose evaluations take
    minutes, a time budget often ends the first generation, and the time plot is that row."""
    ordered = list(evaluations.values())
    step = max(1, math.ceil(len(ordered) / CURVE_POINTS))
    counts = sorted({*range(step, len(ordered) + 1, step), len(ordered)} - {0})
    curve = [{"evaluations": 0, "hypervolume": 0.0}]
    curve += [{"evaluations": n, "hypervolume": feasible_hypervolume(ordered[:n], objectives, reference)} for n in counts]
    failures = Counter(generation_of.get(k) for k, e in evaluations.items() if not e.ok)
    rows = [{"generation": None, "evaluations": 0, "elapsed_s": 0.0, "hypervolume": 0.0, "failures": 0, "operator_rates": None}]
    for record in generations:
        done = int(record.get("evaluations", 0))
        rows.append({
            "generation": record["generation"],
            "evaluations": done,
            "elapsed_s": float(record.get("elapsed_s", 0.0)),
            "hypervolume": feasible_hypervolume(ordered[:done], objectives, reference),
            "failures": failures.get(record["generation"], 0),
            "operator_rates": record.get("operator_rates") or None,
        })
    recorded = int(generations[-1].get("evaluations", 0)) if generations else 0
    if finished and "stopped_in_generation" in finished and len(ordered) > recorded:
        cut = int(finished["stopped_in_generation"])
        rows.append({"generation": cut, "evaluations": len(ordered), "elapsed_s": float(finished.get("elapsed_s", 0.0)),
                     "hypervolume": feasible_hypervolume(ordered, objectives, reference), "failures": failures.get(cut, 0),
                     "operator_rates": None, "partial": True})
    return {"curve": curve, "generations": rows}


def feature_shares(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each (setting, value) seen in successful evaluations: its share among them and among
    front members, and the ratio of the two (``lift`` > 1: the setting is over-represented on
    the front). Sorted by lift, most over-represented first."""
    ok = [p for p in points if p["status"] == "ok"]
    front = [p for p in ok if p["front"]]
    if not ok or not front:
        return []
    seen: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for p in ok:
        for name, value in p["features"].items():
            seen[(name, str(value))][0] += 1
            if p["front"]:
                seen[(name, str(value))][1] += 1
    rows: list[dict[str, Any]] = []
    for (name, value), (n_all, n_front) in seen.items():
        share_all, share_front = n_all / len(ok), n_front / len(front)
        rows.append({"setting": name, "value": value, "evaluations": n_all, "front": n_front,
                     "share_all": share_all, "share_front": share_front, "lift": share_front / share_all})
    rows.sort(key=lambda r: (-r["lift"], -r["front"], r["setting"], r["value"]))
    return rows


def objective_names(run_dir: str | Path) -> list[str]:
    """The names of a stored run's objectives."""
    domain, _ = _stored_domain(run_dir)
    return [o.name for o in domain.objectives]


def shared_reference(runs: Sequence[str | Path]) -> np.ndarray | None:
    """One hypervolume reference for several runs: the first run's (its domain's fixed one, or
    the working reference its engine stored)."""
    from evoforge.report.text import run_reference

    domain, stored = _stored_domain(runs[0])
    reference: np.ndarray | None = run_reference(stored, domain.objectives)
    return reference


def _stored_domain(run_dir: str | Path) -> tuple[Any, Any]:
    """A stored run's domain and the hypervolume reference its engine stored."""
    from evoforge.api import open_store
    from evoforge.layout import RunLayout
    from evoforge.search.domain import domain_from_spec

    with open_store(run_dir, readonly=True) as store:
        config = store.config()
        stored = store.meta("reference")
    if config is None:
        raise ValueError(f"{run_dir} holds no run yet")
    return domain_from_spec(config["domain"], RunLayout(Path(run_dir))), stored


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str)) and not (isinstance(value, float) and not math.isfinite(value))


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if math.isfinite(v) else None) for k, v in values.items()}
