"""The generic Python entry points: run a search on any domain, resume it, read its front,
export a member, rebuild a member as a model."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoforge.errors import ConfigError, StoreError
from evoforge.execute.base import refuse_in_worker_import
from evoforge.front import Front, Member
from evoforge.layout import RunLayout, make_folder
from evoforge.run import FIXED_ON_RESUME, RunSpec, stored_spec
from evoforge.search.domain import Domain, domain_from_spec
from evoforge.search.engine import Search, SearchCallback, candidate_seed
from evoforge.search.minimize import DEFAULT_TOLERANCE
from evoforge.search.termination import parse_budget
from evoforge.store.base import RunStore
from evoforge.store.memory import MemoryRunStore
from evoforge.store.sqlite import SQLiteRunStore

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from evoforge.run import RunSettings


def open_store(run_dir: str | Path, *, readonly: bool = False) -> SQLiteRunStore:
    """The store of the run in ``run_dir``."""
    layout = RunLayout(Path(run_dir))
    if readonly and not layout.holds_run():
        raise ConfigError(f"{run_dir} is not an evoforge run directory (no {layout.store.name}); check the path")
    return SQLiteRunStore(layout.store, readonly=readonly)


def optimize(
    domain: Domain,
    *,
    run_dir: str | Path | None = None,
    spec: RunSpec | None = None,
    callback: SearchCallback | None = None,
    **settings: Unpack[RunSettings],
) -> Front:
    """Search ``domain`` and return the Pareto front.

    The run's settings are ``spec`` or, when it is None, the domain's defaults updated by
    ``settings`` (see `evoforge.run.RunSpec`: algorithm, pop_size, budget, seed, workers,
    timeout_s, executor, address, resources). With a ``run_dir`` everything is stored there
    (resumable with `resume`); without one the run lives in memory.
    """
    refuse_in_worker_import("evoforge.optimize")
    spec = spec or RunSpec.build(domain.run_defaults, **settings)
    store: RunStore
    layout = RunLayout(Path(run_dir)) if run_dir is not None else None
    if layout is not None:
        if layout.holds_run():
            with open_store(layout.root) as existing:
                if existing.config() is not None:
                    raise StoreError(
                        f"{run_dir} already holds a run; resume it with `evoforge resume {run_dir}` or choose a new directory"
                    )
    created = layout is not None and not layout.root.exists()
    if layout is not None:
        layout.create()
    domain.attach(layout)
    try:
        domain.prepare()  # fails early (bad model, data) before any store is written
    except BaseException:
        if created and layout is not None:  # a run that never started leaves nothing behind
            shutil.rmtree(layout.root, ignore_errors=True)
        raise
    store = open_store(layout.root) if layout is not None else MemoryRunStore()
    try:
        search = Search.create(
            domain,
            algorithm=spec.algorithm,
            algorithm_options=spec.algorithm_options(),
            termination=spec.termination(),
            seed=spec.seed,
            store=store,
            layout=layout,
            settings=spec.to_dict(),
            fidelity=spec.fidelity(),
        )
        return _run_and_finalize(search, spec, callback)
    finally:
        store.close()


def _run_and_finalize(search: Search, spec: RunSpec, callback: SearchCallback | None) -> Front:
    """Run the search to its end, then record the domain's held-out numbers for the front members
    (skipped for in-memory runs)."""
    with spec.make_executor() as runner:
        front = search.run(runner, callback=callback, cache=spec.evaluation_cache(), reserve_finalize=search.layout is not None)
    if search.layout is None:
        return front
    return _finalize_front(search, callback)


def _finalize_front(search: Search, callback: SearchCallback | None) -> Front:
    """Record the domain's held-out numbers for the front members that have none yet, write the
    report (domains that write one), and return the front."""
    assert search.layout is not None
    front = search.front()
    final = dict(search.store.meta("final", {}) or {})
    todo = [(m.key, m.evaluation) for m in front if m.key not in final] if search.domain.measures_front else []
    if todo:
        if callback is not None:
            callback.on_finalize(len(todo))
        final.update(search.domain.finalize(todo))
        search.store.put_meta("final", final)
    if search.domain.writes_report:
        _write_report(search.layout.root)
    return search.front()


def _write_report(run_dir: Path) -> None:
    """The run's HTML report; a failure to write it is logged, never fatal (the run is stored,
    and `evoforge report` writes the page again)."""
    from evoforge.report import write_report

    try:
        write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the report is a view of the stored run
        logging.getLogger("evoforge").warning("could not write %s/report.html (%s: %s); run `evoforge report %s`",
                                              run_dir, type(exc).__name__, exc, run_dir)


STOPS_META = "stops"
"""The store's meta key for the budget and patience that resumes replaced (the configuration
itself is written once, when the run starts)."""


def run_settings(run_dir: str | Path) -> RunSpec:
    """The stored settings of the run in ``run_dir``, with the budget and patience of its latest
    resume that replaced them."""
    with open_store(run_dir, readonly=True) as store:
        config = store.config()
        if config is None:
            raise ConfigError(f"{run_dir} holds no run yet")
        return _current_spec(store, config)


def _current_spec(store: RunStore, config: dict[str, Any]) -> RunSpec:
    return stored_spec(config, store.meta("executor")).replace(**(store.meta(STOPS_META) or {}))


def resume(run_dir: str | Path, *, callback: SearchCallback | None = None, **overrides: Unpack[RunSettings]) -> Front:
    """Continue the run in ``run_dir`` where it stopped (finished evaluations are reused), with
    its stored settings; ``overrides`` may change where it runs (workers, timeout_s, executor,
    address, resources), its budget and its patience. A new budget or patience stays with the run:
    a later resume without them keeps it. Raises `ConfigError` when an input changed since the run
    started."""
    refuse_in_worker_import("evoforge.resume")
    fixed = sorted(set(FIXED_ON_RESUME) & {k for k, v in overrides.items() if v is not None})
    if fixed:
        raise ConfigError(f"{', '.join(fixed)} cannot change when a run resumes; start a new run for other values")
    layout = RunLayout(Path(run_dir))
    store = open_store(layout.root)
    try:
        config = store.config()
        if config is None:
            raise ConfigError(f"{run_dir} holds no run to resume; start one first")
        spec = _current_spec(store, config).replace(**overrides)
        stops = {**(store.meta(STOPS_META) or {}),
                 **{name: overrides[name] for name in ("budget", "patience") if overrides.get(name) is not None}}
        search = Search.resume(store, layout=layout, termination=spec.termination() if stops else None)
        if stops:
            store.put_meta(STOPS_META, stops)
        search.domain.prepare()
        return _run_and_finalize(search, spec, callback)
    finally:
        store.close()


def minimize(run_dir: str | Path, member_ids: Sequence[int] | None = None, *, tolerance: float = DEFAULT_TOLERANCE,
             budget: str | int | None = None, workers: int | None = None,
             callback: SearchCallback | None = None) -> list[dict[str, Any]]:
    """Remove the parts of front members that buy nothing (`evoforge.search.minimize`: an evolve
    member's edits, one at a time, kept out while the variant stays within ``tolerance``, relative,
    of the member's timing measured again now, and no worse on every other objective). The
    members are ``member_ids`` (front ids, as `evoforge show` prints them), or else every feasible
    front member with two parts or more. Every variant evaluated is added to the run (it joins
    the front where it is not dominated), the new front members get their held-out numbers, and
    the report is written again; nothing stored is changed. ``budget`` (evaluations or a time,
    as a run's) stops it early: each member's result is then the best found by then. ``workers``
    overrides the run's. Returns one record per member (`Minimization.record`, with
    ``member_id`` and ``result_id``)."""
    refuse_in_worker_import("evoforge.minimize")
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance must be a relative allowance in [0, 1) (0.02 is 2%), got {tolerance}")
    stops = parse_budget(budget) if budget is not None else None
    layout = RunLayout(Path(run_dir))
    if not layout.holds_run():
        raise ConfigError(f"{run_dir} is not an evoforge run directory (no {layout.store.name}); check the path")
    store = open_store(layout.root)
    try:
        config = store.config()
        if config is None:
            raise ConfigError(f"{run_dir} holds no run yet")
        spec = _current_spec(store, config).replace(**({"workers": workers} if workers is not None else {}))
        search = Search.resume(store, layout=layout)
        front = search.front()
        if member_ids is None:
            members = [m for m in front if m.feasible and search.domain.part_count(m.genome) >= 2]
            if not members:
                raise ConfigError(f"no feasible front member of {run_dir} has two parts or more to minimize; see `evoforge show {run_dir}`")
        else:
            members = [front.by_id(i) for i in member_ids]
            for m in members:
                parts = search.domain.part_count(m.genome)
                if parts < 2:
                    raise ConfigError(f"front member {m.id} has {parts} part{'' if parts == 1 else 's'}: nothing to minimize; "
                                      "choose a member with two or more")
        search.domain.prepare()
        with spec.make_executor() as runner:
            records = search.minimize(runner, [m.key for m in members], tolerance=tolerance, budget=stops, callback=callback)
        _finalize_front(search, callback)
        ids = {key: number for number, key in enumerate(store.evaluations(), start=1)}
        return [{"member_id": ids[r["member"]], "result_id": ids[r["result"]], **r} for r in records]
    finally:
        store.close()


def _open_domain(store: RunStore, layout: RunLayout) -> Domain:
    config = store.config()
    if config is None:
        raise ConfigError(f"{layout.root} holds no run yet")
    return domain_from_spec(config["domain"], layout)


def export_member(run_dir: str | Path, member_id: int, out_dir: str | Path | None = None, *,
                  formats: Sequence[str] = ()) -> dict[str, Any]:
    """Write front member ``member_id`` of the run as a deployable artifact into ``out_dir``
    (default ``RUN/exports/<id>``) and verify it (the domain reloads it and recomputes its
    held-out numbers, which must match what the run reports). ``formats`` names further
    runtimes to convert the member to, where the domain can (compress: float members).
    ``out_dir`` must be new, empty or an earlier export (it holds ``card.json``)."""
    refuse_in_worker_import("evoforge.export_member")
    exporter = _FrontExporter(RunLayout(Path(run_dir)))
    out = Path(out_dir) if out_dir is not None else exporter.layout.export_dir(member_id)
    return exporter.export(exporter.front.by_id(member_id), out, formats)


def export_front(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[int, dict[str, Any]]:
    """Export and verify every front member of the run, as `export_member` does one, into
    ``out_dir/<id>`` (default ``RUN/exports/<id>``). Returns each member id's card, or
    ``{"error": message}`` for a member whose artifact failed to export or verify: the others
    are still exported. A problem of the whole run (changed inputs, a folder holding other
    files) raises `ConfigError` at once."""
    refuse_in_worker_import("evoforge.export_front")
    from evoforge.errors import EvaluationError

    exporter = _FrontExporter(RunLayout(Path(run_dir)))
    if out_dir is not None:
        make_folder(Path(out_dir), "export folder")
    cards: dict[int, dict[str, Any]] = {}
    for member in exporter.front:
        out = Path(out_dir) / str(member.id) if out_dir is not None else exporter.layout.export_dir(member.id)
        try:
            cards[member.id] = exporter.export(member, out, ())
        except EvaluationError as exc:
            cards[member.id] = {"error": str(exc)}
    return cards


class _FrontExporter:
    """A run's domain and front, opened once, to export members of it."""

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout
        with open_store(layout.root, readonly=True) as store:
            self.domain = _open_domain(store, layout)
            self.front = Front.from_store(store, self.domain.objectives)
            self.final = store.meta("final", {}) or {}
            self.run_seed = int((store.config() or {})["seed"])

    def export(self, member: Member, out: Path, formats: Sequence[str]) -> dict[str, Any]:
        """Export ``member`` into ``out`` (new, empty or an earlier export); see `export_member`."""
        created = _make_export_dir(out)
        try:
            return self.domain.export_member(member.key, member.genome, member.evaluation, out, claimed=self.final.get(member.key),
                                             formats=formats, seed=candidate_seed(self.run_seed, member.key))
        except BaseException:
            if created and not any(out.iterdir()):
                out.rmdir()  # a refused export leaves no empty folder behind
            raise


def _make_export_dir(out: Path) -> bool:
    """Make the export folder ``out`` (True when this made it). A folder that holds files and no
    earlier export's ``card.json`` is refused, so that an export never overwrites other files."""
    if out.is_dir() and any(out.iterdir()) and not (out / "card.json").is_file():
        raise ConfigError(f"{out} holds files and no earlier export (no card.json); give a new or empty folder")
    return make_folder(out, "export folder")


def explain_member(run_dir: str | Path, member_id: int) -> list[dict[str, Any]]:
    """What each part of front member ``member_id`` contributes, measured now by evaluating
    variants of it the way the run evaluates candidates (`Domain.explain_member`; evolve: the
    member without each edit and each edit alone). Adds nothing to the run's store (an evolve run's
    compiled variants go to its bounded compile cache, as the search's do)."""
    refuse_in_worker_import("evoforge.explain_member")
    layout = RunLayout(Path(run_dir))
    with open_store(layout.root, readonly=True) as store:
        domain = _open_domain(store, layout)
        member = Front.from_store(store, domain.objectives).by_id(member_id)
    return domain.explain_member(member.genome)


def load_front(run_dir: str | Path) -> Front:
    """The current front of a run, read-only (safe while the run is going on)."""
    layout = RunLayout(Path(run_dir))
    with open_store(layout.root, readonly=True) as store:
        return Front.from_store(store, _open_domain(store, layout).objectives)


def member_model(run_dir: str | Path, evaluation_id: int) -> Any:
    """Rebuild evaluation ``evaluation_id`` of a run (ids as `evoforge show` prints them; any
    successful evaluation, not only front members) as a model object, through its domain."""
    from evoforge.genome import genome_from_json

    layout = RunLayout(Path(run_dir))
    with open_store(layout.root, readonly=True) as store:
        domain = _open_domain(store, layout)
        config = store.config() or {}
        evaluations = list(store.evaluations().items())
        index = evaluation_id - 1
        if not 0 <= index < len(evaluations) or not evaluations[index][1].ok:
            raise ConfigError(f"{run_dir} has no successful evaluation with id {evaluation_id}; see `evoforge show {run_dir}`")
        key, evaluation = evaluations[index]
        genome = genome_from_json(store.genome(key))
    return domain.member_model(key, genome, evaluation, candidate_seed(int(config["seed"]), key))
