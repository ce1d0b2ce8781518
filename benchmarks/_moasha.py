"""Syne Tune's MOASHA as a peer of evoforge's multi-fidelity screening, for `benchmarks/search_cost.py`.

MOASHA (Schmucker et al. 2021) is random sampling plus asynchronous successive halving whose
promotion ranks by non-dominated sorting. Here its scheduler makes every promotion decision: each
screened candidate is reported to it at its rung's milestone (eta ** rung index), in the order the
candidates were sampled, and goes on only when the scheduler answers CONTINUE. evoforge's engine
samples (the ``random`` algorithm), evaluates, stores and measures, so both sides share the genome
space, the domain and the evaluation cost. Syne Tune is installed by ``make bench`` without its
dependencies (the scheduler needs none of them; they would pull xgboost and a CUDA NCCL wheel).
Benchmark code, not part of evoforge.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.pareto import Objective, to_min_matrix, violation
from evoforge.search.evaluation import Evaluation
from evoforge.search.fidelity import Fidelity

_INFEASIBLE = 1e3
"""Added to every objective of a candidate that breaks a constraint (MOASHA has no constraints),
so that it ranks behind every feasible one."""


@dataclasses.dataclass(frozen=True)
class MoashaFidelity(Fidelity):
    """evoforge's rungs and eta with the promotion decided by a Syne Tune MOASHA scheduler that
    sees every screening of the run."""

    scheduler: Any = dataclasses.field(default=None, compare=False, repr=False)
    trials: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    decisions: dict[Any, list[str]] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    """The promotions already decided, by rung and candidates: the engine asks again for the same
    rung (each `ask` and `advance` recompute promotion), and the scheduler must report a trial once."""

    @classmethod
    def create(cls, rungs: Sequence[float], eta: int, objectives: Sequence[Objective], seed: int) -> MoashaFidelity:
        try:
            from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
        except ImportError as exc:
            raise SystemExit(f"the MOASHA peer needs syne-tune ({exc}); run `make bench`, which installs it") from None
        milestones = len(rungs) - 1
        scheduler = MOASHA(config_space={}, metrics=[o.name for o in objectives], do_minimize=True, time_attr="rung",
                           max_t=eta**milestones + 1, grace_period=1, reduction_factor=eta, random_seed=seed)
        return cls(tuple(rungs), eta, "top", scheduler, {}, {})

    def promoted(self, keys: Sequence[str], results: Mapping[str, Evaluation], objectives: Sequence[Objective],
                 count: int) -> list[str]:
        from syne_tune.backend.trial_status import Trial
        from syne_tune.optimizer.scheduler import SchedulerDecision

        ok = [k for k in keys if results[k].ok]
        if not ok or count < 1:
            return []
        fraction = float(results[ok[0]].metrics.get("fidelity", self.rungs[0]))
        decided = (fraction, tuple(keys), count)
        if decided in self.decisions:
            return self.decisions[decided]
        milestone = self.eta ** self.rungs.index(fraction)
        values = to_min_matrix(objectives, [results[k].objectives for k in ok])
        chosen = []
        for key, row in zip(ok, values):
            if key not in self.trials:
                self.trials[key] = Trial(trial_id=len(self.trials), config={}, creation_time=datetime.datetime.now())
                self.scheduler.on_trial_add(self.trials[key])
            penalty = _INFEASIBLE + violation(results[key].constraints) if violation(results[key].constraints) > 0 else 0.0
            report = {"rung": milestone, **{o.name: float(v) + penalty for o, v in zip(objectives, row)}}
            if not np.all(np.isfinite(row)):
                continue
            if self.scheduler.on_trial_result(self.trials[key], report) == SchedulerDecision.CONTINUE:
                chosen.append(key)
        picked = set(chosen[:count])
        self.decisions[decided] = [k for k in keys if k in picked]
        return self.decisions[decided]


def moasha_compress(task: str, run_dir: Path, *, rungs: Sequence[float], eta: int, **settings: Any) -> Path:
    """A compress run of ``task`` in ``run_dir``: random sampling, screening at ``rungs``, promotion
    by MOASHA (what `evoforge.compress` does, with the fidelity replaced)."""
    from evoforge.api import _run_and_finalize, open_store
    from evoforge.compression.api import resolve_task
    from evoforge.compression.domain import DEFAULT_OBJECTIVES, DEFAULT_RUNTIME, CompressDomain
    from evoforge.layout import RunLayout
    from evoforge.run import RunSpec
    from evoforge.search.engine import Search

    spec = RunSpec.build(CompressDomain.run_defaults, algorithm="random", rungs=",".join(map(str, rungs)), eta=eta, **settings)
    domain = CompressDomain(resolve_task(task, None), objectives=list(DEFAULT_OBJECTIVES), max_quality_drop=-1.0,
                            timeout_s=spec.timeout_s, runtime=DEFAULT_RUNTIME, prefix_seed=spec.seed)
    layout = RunLayout(run_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    domain.attach(layout)
    domain.prepare()
    with open_store(layout.root) as store:
        search = Search.create(domain, algorithm=spec.algorithm, algorithm_options=spec.algorithm_options(),
                               termination=spec.termination(), seed=spec.seed, store=store, layout=layout,
                               settings=spec.to_dict(),
                               fidelity=MoashaFidelity.create(rungs, eta, domain.objectives, spec.seed))
        _run_and_finalize(search, spec, None)
    return run_dir
