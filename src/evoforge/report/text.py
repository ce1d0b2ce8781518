"""Text reports of runs: summaries and aligned tables (user strings are printed, never executed)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evoforge.search.eval_cache import HIT_METRIC
from evoforge.search.evaluation import Evaluation
from evoforge.search.minimize import MINIMIZED_FROM, MINIMIZED_META, MINIMIZED_TO, minimize_links, shorter_variants


def format_table(rows: Sequence[dict[str, Any]], *, max_width: int = 40) -> str:
    """Rows of dicts as an aligned text table (columns in first-seen order); cells longer than
    ``max_width`` are cut (0: never)."""
    if not rows:
        return "(empty front: no successful evaluation yet)"
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    cells = [[_cell(row.get(c), max_width) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any, max_width: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))  # no terminal control codes
    return text if max_width <= 0 or len(text) <= max_width else text[: max_width - 1] + "…"


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """The front and headline facts of a run, read-only."""
    from evoforge.api import open_store
    from evoforge.front import Front, feasible_hypervolume
    from evoforge.layout import RunLayout
    from evoforge.search.domain import domain_from_spec

    with open_store(run_dir, readonly=True) as store:
        config = store.config()
        if config is None:
            return {"headline": f"{run_dir}: no run recorded yet", "front": []}
        domain = domain_from_spec(config["domain"], RunLayout(Path(run_dir)))
        evaluations = store.evaluations()
        generations = store.generations()
        finished = store.meta("finished")
        final = store.meta("final", {}) or {}
        store_reference = store.meta("reference")
        front = Front.from_store(store, domain.objectives)
        screened = store.screenings()
        minimized = store.meta(MINIMIZED_META) or {}
    from evoforge.search.domain import Domain

    describes = type(domain).describe is not Domain.describe
    descriptions = {m.key: domain.describe(m.genome) for m in front} if describes else {}
    statuses = Counter(e.status.value for e in evaluations.values())
    hv = generations[-1]["hypervolume"] if generations else 0.0
    archive_hv = feasible_hypervolume(evaluations.values(), domain.objectives, run_reference(store_reference, domain.objectives))
    state = f"finished ({finished['reason']})" if finished else "not finished (resume it to continue)"
    if finished and "stopped_in_generation" in finished:
        state += (f"; generation {finished['stopped_in_generation']} was stopped part-way "
                  "(`evoforge resume` with a larger --budget evaluates the rest)")
    headline = (
        f"run {run_dir}: domain {config['domain']['name']}, algorithm {config['algorithm']['name']}, "
        f"{len(generations)} generations, {len(evaluations)} evaluations "
        f"({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}), "
        f"HV {archive_hv:.4g} of all feasible evaluations (population {hv:.4g}), {state}"
        + ("" if front.feasible or not len(front) else "; NO feasible member: showing the least-violating ones")
    )
    rows = front.to_records()
    baseline = final.get("baseline", {})
    ids = {key: number for number, key in enumerate(evaluations, start=1)}
    shorter = shorter_variants(minimized)
    for row in rows:
        row.update(minimize_links(row["key"], row, ids, shorter))
        if row["key"] in descriptions and "pipeline" not in row:
            row["description"] = descriptions[row["key"]]
        for name, value in (final.get(row["key"]) or {}).items():
            row[f"test_{name}"] = value
            if name in baseline:
                row[f"Δtest_{name}"] = round(value - baseline[name], 12)  # two averages of one value: no 1e-16 residue
    if config.get("fidelity"):
        rungs = ", ".join(f"{len(screened.get(float(f), {}))} at {f:g}" for f in config["fidelity"]["rungs"][:-1])
        schedule = config["fidelity"].get("schedule", "synchronous")
        headline += (f"\nmulti-fidelity: screened {rungs} of full fidelity (eta {config['fidelity']['eta']}, promote "
                     f"{config['fidelity']['promote']}, {schedule}); {len(evaluations)} full evaluations, the only ones the front "
                     "and HV use")
        headline += _screening_cost(screened, evaluations, int(config["fidelity"]["eta"]))
    reused = sum(bool(e.metrics.get(HIT_METRIC)) for e in evaluations.values())
    if reused:
        headline += (f"\nevaluation cache: {reused} of {len(evaluations)} evaluations were taken from the shared cache "
                     f"(run setting eval_cache: {(config.get('run') or {}).get('eval_cache')})")
    if minimized:
        headline += "\n" + _minimized_line(minimized, ids)
    if baseline:
        headline += "\nbaseline (held-out test): " + ", ".join(f"{k} {v:.4g}" for k, v in baseline.items())
    for note in domain.headline_notes(evaluations):
        headline += f"\n{note}"
    for problem in domain.check_inputs():
        headline += f"\nWARNING: {problem} (export and resume refuse until then)"
    shown = ["id", *(o.name for o in domain.objectives)]
    extra = [c for row in rows for c in row if c.startswith(("test_", "Δtest_"))]
    shown += list(dict.fromkeys(extra)) + [c for c in TABLE_EXTRAS if any(c in row for row in rows)]
    table = [{c: row.get(c) for c in shown} for row in rows]
    return {"headline": headline, "front": rows, "table": table, "config": config, "final": final}


def _minimized_line(records: dict[str, Any], ids: dict[str, int]) -> str:
    """What `evoforge minimize` made of the run's members, in one line."""
    parts = []
    for r in records.values():
        if r.get("reference_failure"):
            parts.append(f"{ids.get(r['member'], '?')} failed when evaluated again")
            continue
        stopped = "" if r["finished"] else ", stopped by its budget"
        parts.append(f"{ids.get(r['member'], '?')} -> {ids.get(r['result'], '?')} ({len(r['removed'])} of "
                     f"{len(r['kept']) + len(r['removed'])} edits removed{stopped})")
    return ("minimized (`evoforge minimize`; columns minimized_from and minimized_to link each member and its shorter "
            "variant): " + "; ".join(parts))


def run_reference(stored: Any, objectives: Any) -> Any:
    """The run's hypervolume reference: the domain's fixed one, or the one the engine stored."""
    import numpy as np

    from evoforge.pareto import reference_point

    fixed = reference_point(objectives)
    return fixed if fixed is not None else (np.array(stored, dtype=float) if stored is not None else None)


TABLE_EXTRAS = ("speedup", "latency_vs_eager", "latency_vs_best_fp32", "vs_torch_eager", "vs_torch_compile", "vs_onnxruntime",
                "vs_openvino", "vs_iree_o3", "size_bytes", "latency_batch_ms", MINIMIZED_FROM, MINIMIZED_TO, "description", "pipeline")
"""Metric columns the front table shows when a domain reports them."""


def _screening_cost(screened: dict[float, dict[str, Evaluation]], full: dict[str, Evaluation], eta: int) -> str:
    """A line with each rung's median seconds per screening, and what that is of a full evaluation:
    of the same candidates' full evaluations where some were promoted, else of the median one.
    Screening saves compute only when a screening costs well under 1/eta of a full evaluation."""
    full_s = [e.duration_s for e in full.values() if e.duration_s > 0]
    if not full_s:
        return ""
    parts = []
    for fraction, by_key in sorted(screened.items()):
        seconds = [e.duration_s for e in by_key.values() if e.duration_s > 0]
        if not seconds:
            continue
        pairs = [e.duration_s / full[k].duration_s for k, e in by_key.items()
                 if e.duration_s > 0 and k in full and full[k].duration_s > 0]
        share = (f"{statistics.median(pairs):.2f} of the same candidates' full evaluations, {len(pairs)} promoted" if pairs
                 else f"{statistics.median(seconds) / statistics.median(full_s):.2f} of the median full evaluation, none promoted")
        parts.append(f"{statistics.median(seconds):.3g} s at {fraction:g} ({share})")
    if not parts:
        return ""
    return (f"\nscreening cost: a median {'; '.join(parts)}. Screening saves compute only well below 1/eta = {1 / eta:.2f} "
            "of a full evaluation")
