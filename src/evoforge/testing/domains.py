"""Small domains for tests: fault injection, operator adaptation, pre-selection traps and a
single objective.

Both are registered domains, so worker processes and resumed runs rebuild them by name.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.errors import ConfigError, EvaluationError
from evoforge.genome import Genome, register_genome
from evoforge.pareto import Objective
from evoforge.registry import Registry
from evoforge.search.domain import Domain, EvalContext, Mutation, register_domain
from evoforge.search.evaluation import Evaluation, Status

BEHAVIOURS = ("ok", "raise", "nan", "inf", "segfault", "abort", "exit", "hang", "memory", "sleep", "disk_full")


@register_genome
@dataclasses.dataclass(frozen=True)
class FaultGenome(Genome):
    """``behaviour`` says what the evaluation does; ``x`` in [0, 1] places an OK result on the
    front (f1 = x, f2 = 1 - x)."""

    TYPE = "fault"
    VERSION = 1

    behaviour: str = "ok"
    x: float = 0.5


@register_domain
class FaultDomain(Domain):
    """Evaluations that succeed, raise, return NaN/inf, segfault, abort, exit, hang, allocate
    ``memory_mb`` MiB, sleep ``sleep_s`` seconds, or hit a full disk while writing their artifact
    (a real ENOSPC from /dev/full), as their genome says. The initial population
    is ``behaviours`` in order; mutation only moves ``x`` (the behaviour is kept)."""

    name = "faults"

    def __init__(self, behaviours: Sequence[str] = ("ok",), sleep_s: float = 0.0, memory_mb: int = 4096) -> None:
        unknown = [b for b in behaviours if b not in BEHAVIOURS]
        if unknown:
            raise ConfigError(f"unknown behaviours {unknown}; valid: {', '.join(BEHAVIOURS)}")
        self.behaviours = list(behaviours)
        self.sleep_s = sleep_s
        self.memory_mb = memory_mb
        self.objectives = (Objective("f1", reference=1.1), Objective("f2", reference=1.1))
        self._mutations: Registry[Mutation] = Registry("mutation operator")
        self._mutations.add("shift", self._shift)

    def config(self) -> dict[str, Any]:
        return {"behaviours": self.behaviours, "sleep_s": self.sleep_s, "memory_mb": self.memory_mb}

    @property
    def mutations(self) -> Mapping[str, Mutation]:
        return self._mutations

    def _shift(self, genome: Genome, rng: np.random.Generator) -> Genome:
        assert isinstance(genome, FaultGenome)
        return FaultGenome(genome.behaviour, float(np.clip(genome.x + rng.normal(0, 0.2), 0, 1)))

    def initial_population(self, rng: np.random.Generator, size: int) -> list[Genome]:
        return [FaultGenome(b, round(float(rng.random()), 6)) for b in self.behaviours]

    def sample(self, rng: np.random.Generator) -> Genome:
        return FaultGenome("ok", float(rng.random()))

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        assert isinstance(genome, FaultGenome)
        b = genome.behaviour
        if b == "raise":
            raise RuntimeError("injected failure")
        if b == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if b == "abort":
            os.abort()
        if b == "exit":
            os._exit(3)
        if b == "hang":
            while True:
                time.sleep(1)
        if b == "memory":
            blob = bytearray(self.memory_mb * 1024 * 1024)
            blob[::4096] = b"x" * len(blob[::4096])
        if b == "disk_full":
            with open("/dev/full", "wb") as artifact:  # the kernel answers every write with ENOSPC
                artifact.write(b"\0" * 65536)
                artifact.flush()
        if b == "sleep" or self.sleep_s:
            time.sleep(self.sleep_s)
        value = {"nan": math.nan, "inf": math.inf}.get(b, genome.x)
        return Evaluation(Status.OK, {"f1": value, "f2": 1.0 - genome.x})


class VectorToyDomain(Domain):
    """Base of the toy domains over `RealVector` genomes: no configuration, the named mutations
    given, and a first generation of uniform samples from ``[LOW, HIGH]^SIZE``."""

    LOW, HIGH, SIZE = 0.0, 1.0, 2

    def __init__(self, objectives: Sequence[Objective], **mutations: Mutation) -> None:
        self.objectives = tuple(objectives)
        self._mutations: Registry[Mutation] = Registry("mutation operator")
        for name, mutation in mutations.items():
            self._mutations.add(name, mutation)

    def config(self) -> dict[str, Any]:
        return {}

    @property
    def mutations(self) -> Mapping[str, Mutation]:
        return self._mutations

    def initial_population(self, rng: np.random.Generator, size: int) -> list[Genome]:
        return [self.sample(rng) for _ in range(size)]

    def sample(self, rng: np.random.Generator) -> Genome:
        return _vector(rng.uniform(self.LOW, self.HIGH, self.SIZE))


def _vector(values: Any) -> Genome:
    from evoforge.problems import RealVector

    return RealVector(tuple(float(v) for v in values))


@register_domain
class AdaptationDomain(VectorToyDomain):
    """Minimize (x, y) over [0, 10]^2 starting far from the origin. Operator ``improve`` always
    moves towards the origin (its child dominates its parent), ``worsen`` always moves away, and
    ``wander`` moves at random: an adapting algorithm should learn to prefer ``improve``."""

    name = "adaptation"
    LOW, HIGH = 8.0, 10.0

    def __init__(self) -> None:
        super().__init__(
            (Objective("x", reference=11.0), Objective("y", reference=11.0)),
            improve=lambda g, rng: self._move(g, -rng.uniform(0.01, 0.2, 2)),
            worsen=lambda g, rng: self._move(g, rng.uniform(0.01, 0.2, 2)),
            wander=lambda g, rng: self._move(g, rng.normal(0, 0.1, 2)),
        )

    @staticmethod
    def _move(genome: Genome, step: np.ndarray) -> Genome:
        return _vector(np.clip(np.array(genome.values) + step, 0, 10))  # type: ignore[attr-defined]

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        x, y = genome.values  # type: ignore[attr-defined]
        return Evaluation(Status.OK, {"x": x, "y": y})


@register_domain
class HiddenSettingDomain(VectorToyDomain):
    """ZDT1's front shifted up by a penalty that only one of ten values of a categorical
    setting (``x[0]`` in ten bins) avoids, plus a second, numeric setting (``x[1]``) whose best
    value is 0.2. Mutation redraws one coordinate; what decides the quality of a child is which
    bin it lands in, which a model of past evaluations (`search_features`) can learn and blind
    mutation cannot: the domain where model-based pre-selection is known to pay."""

    name = "hidden-setting"
    GOOD_BIN = 7
    SIZE = 3

    def __init__(self) -> None:
        super().__init__((Objective("f1", reference=1.1), Objective("f2", reference=3.0)),
                         **{name: functools.partial(self._redraw, index=i) for i, name in enumerate(("setting", "knob", "trade"))})

    @staticmethod
    def _redraw(genome: Genome, rng: np.random.Generator, *, index: int) -> Genome:
        values = list(genome.values)  # type: ignore[attr-defined]
        values[index] = float(rng.uniform(0, 1))
        return _vector(values)

    def search_features(self, genome: Genome) -> dict[str, float | str]:
        setting, knob, _ = genome.values  # type: ignore[attr-defined]
        return {"setting": f"bin {min(int(setting * 10), 9)}", "knob": knob}

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        setting, knob, trade = genome.values  # type: ignore[attr-defined]
        penalty = (0.0 if min(int(setting * 10), 9) == self.GOOD_BIN else 2.0) + 4.0 * abs(knob - 0.2)
        g = 1.0 + penalty
        return Evaluation(Status.OK, {"f1": trade, "f2": g * (1 - math.sqrt(trade / g))})


@register_domain
class LockOutDomain(VectorToyDomain):
    """A setting that pays only once another one is right, the trap of greedy pre-selection.
    ``x[0]`` is a mode (``a`` below 0.5, ``b`` above), ``x[1]`` a knob whose best value is 0.8,
    ``x[2]`` the trade-off along the front. Mode ``a`` pays a penalty that shrinks as the knob nears
    0.8; mode ``b`` pays none when the knob is within `BAND` of 0.8 and a large one otherwise. The
    first generation is all mode ``a``; operator ``mode`` flips the mode, ``knob`` nudges the
    knob, ``trade`` redraws the trade-off. Early mode-``b`` children land off the band and fail, a
    model of past evaluations then rates mode ``b`` as bad, and a purely model-picked search stops
    trying it although mode ``b`` at the right knob dominates everything mode ``a`` reaches."""

    name = "lock-out"
    SIZE = 3
    BEST_KNOB = 0.8
    BAND = 0.03

    def __init__(self) -> None:
        super().__init__(
            (Objective("f1", reference=1.1), Objective("f2", reference=6.0)),
            mode=lambda g, rng: self._set(g, 0, 1.0 - g.values[0]),  # type: ignore[attr-defined]
            knob=lambda g, rng: self._set(g, 1, float(np.clip(g.values[1] + rng.normal(0, 0.1), 0, 1))),  # type: ignore[attr-defined]
            trade=lambda g, rng: self._set(g, 2, float(rng.uniform(0, 1))),
        )

    @staticmethod
    def _set(genome: Genome, index: int, value: float) -> Genome:
        values = list(genome.values)  # type: ignore[attr-defined]
        values[index] = value
        return _vector(values)

    def sample(self, rng: np.random.Generator) -> Genome:
        return _vector((rng.uniform(0, 0.5), rng.uniform(0, 1), rng.uniform(0, 1)))

    def search_features(self, genome: Genome) -> dict[str, float | str]:
        mode, knob, _ = genome.values  # type: ignore[attr-defined]
        return {"mode": "b" if mode >= 0.5 else "a", "knob": knob}

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        mode, knob, trade = genome.values  # type: ignore[attr-defined]
        miss = abs(knob - self.BEST_KNOB)
        penalty = (0.0 if miss < self.BAND else 4.0) if mode >= 0.5 else 0.5 + 2.0 * miss
        g = 1.0 + penalty
        return Evaluation(Status.OK, {"f1": trade, "f2": g * (1 - math.sqrt(trade / g))})


@register_domain
class FidelityDomain(VectorToyDomain):
    """A ZDT1-like problem over (x, y) in [0, 1]^2 that can be evaluated at lower fidelity: at a
    fraction f < 1 both objectives are shifted up by 0.5 * (1 - f), which keeps their order, so
    promotion at a screening rung picks what full evaluations would (the known answer). Each
    result records the fidelity it was asked for in ``metrics["asked_fidelity"]``."""

    name = "fidelity-toy"
    supports_fidelity = True

    def __init__(self) -> None:
        super().__init__((Objective("f1", reference=1.6), Objective("f2", reference=11.0)),
                         step=lambda g, rng: _vector(np.clip(np.array(g.values) + rng.normal(0, 0.1, 2), 0, 1)))  # type: ignore[attr-defined]

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        x, y = genome.values  # type: ignore[attr-defined]
        shift = 0.5 * (1.0 - context.fidelity)
        g = 1 + 9 * y
        return Evaluation(Status.OK, {"f1": x + shift, "f2": g * (1 - math.sqrt(x / g)) + shift},
                          metrics={"asked_fidelity": context.fidelity})


@register_domain
class PipelineRateDomain(Domain):
    """Compression pipelines (`PipelineGenome`, PETRA's operators) scored by a known rule, for the
    rate drift: a pipeline that trains loses ``|log10(lr / BEST_RATE)|`` of quality, plus half the
    share of channels it prunes; one that never trains loses 1. Size is the share of channels kept
    (a quarter of it after int8; the space holds the int8 modes only). The first generation is
    warm starts at the task's rate (``TASK_RATE``, ten times too high) plus samples, so a search
    finds the better rate only by moving the rate of the pipelines that start from the warm
    starts, as on a real task."""

    name = "pipeline-rate"
    TASK_RATE, BEST_RATE = 3e-3, 3e-4

    def __init__(self, rate_drift: float | None = None, quantize_operator: bool = True) -> None:
        from evoforge.compression.genome import QUANT_MODES, TrainingSettings
        from evoforge.compression.operators import RATE_DRIFT, PipelineOperators, SearchSpace

        self.rate_drift = RATE_DRIFT if rate_drift is None else rate_drift
        self.quantize_operator = quantize_operator
        self.base = TrainingSettings(lr=self.TASK_RATE)
        int8 = SearchSpace(quant_modes=tuple(m for m in QUANT_MODES if m != "bf16"))
        self.operators = PipelineOperators("classification", base=self.base, rate_drift=self.rate_drift,
                                           quantize_operator=quantize_operator, space=int8)
        self._mutations = self.operators.registry()
        self.objectives = (Objective("drop", reference=2.0), Objective("size", reference=1.1))

    def config(self) -> dict[str, Any]:
        return {"rate_drift": self.rate_drift, "quantize_operator": self.quantize_operator}

    @property
    def mutations(self) -> Mapping[str, Mutation]:
        return self._mutations  # type: ignore[return-value]

    def warm_starts(self) -> list[Genome]:
        from evoforge.compression.genome import PipelineGenome, Stage

        def prune(ratio: float) -> Stage:
            return Stage.make("prune", importance="l2", ratio=ratio, steps=1, allocation="uniform", round_to=8, epochs=3)

        pipelines = [PipelineGenome((prune(r),), self.base) for r in (0.3, 0.5, 0.7)]
        return [self.operators.canonical(g) for g in pipelines]

    def initial_population(self, rng: np.random.Generator, size: int) -> list[Genome]:
        return (self.warm_starts() + [self.sample(rng) for _ in range(size)])[:size]

    def sample(self, rng: np.random.Generator) -> Genome:
        return self.operators.sample(rng, base=self.base)

    def search_features(self, genome: Genome) -> dict[str, float | str]:
        from evoforge.compression.operators import pipeline_features

        return pipeline_features(genome)  # type: ignore[arg-type]

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        from evoforge.compression.operators import uses_training_settings

        kept = 1.0
        for stage in genome.stages:  # type: ignore[attr-defined]
            if stage.kind == "prune":
                kept *= 1.0 - stage["ratio"]
        drop = abs(math.log10(genome.training.lr / self.BEST_RATE)) if uses_training_settings(genome) else 1.0  # type: ignore[attr-defined,arg-type]
        size = kept * (0.25 if any(s.kind == "quantize" for s in genome.stages) else 1.0)  # type: ignore[attr-defined]
        return Evaluation(Status.OK, {"drop": drop + 0.5 * (1.0 - kept), "size": size})


@register_genome
@dataclasses.dataclass(frozen=True)
class PartsGenome(Genome):
    """A list of named parts; a part's kind is its name up to the first ``-`` (see `PartsDomain`)."""

    TYPE = "parts"
    VERSION = 1

    parts: tuple[str, ...] = ()


@register_domain
class PartsDomain(Domain):
    """Genomes of parts with known effects, for minimizing members (`evoforge.search.minimize`).
    ``cost`` (timed) starts at 1 and ``error`` at 0; by kind, a ``fast`` part takes 0.4 off the
    cost, a ``costly`` part adds 0.05 to the error, a ``slow`` part adds 0.1 to the cost, an
    ``idle`` part does nothing, ``spare`` parts take 0.3 off the cost however many there are (any
    one of them can go, not all), and a ``needs`` part fails the evaluation unless a ``fast`` part
    is present (an edit that refers to what an earlier edit made). ``noise`` scales the cost by up to
    that share either way, drawn from the evaluation's seed. The first generation is the empty
    genome and ``members``; mutation appends a random part. ``error_limit``: a constraint
    ``error - error_limit`` when set. Each evaluation records the cost before noise (``true_cost``).
    Like evolve, it measures front members again when a stored run ends (``test_error``: the error).
    A member exports as ``parts.json``; one holding a ``slow`` part fails its export's verification."""

    name = "parts-toy"
    timed_objectives = ("cost",)
    measures_front = True
    KINDS = ("fast", "costly", "slow", "idle", "spare", "needs")

    def __init__(self, members: Sequence[Sequence[str]] = (), noise: float = 0.0, error_limit: float | None = None) -> None:
        self.members = [list(m) for m in members]
        self.noise = noise
        self.error_limit = error_limit
        self.objectives = (Objective("cost", reference=2.0), Objective("error", reference=1.0))
        self.constraints = ("error_limit",) if error_limit is not None else ()
        self._mutations: Registry[Mutation] = Registry("mutation operator")
        self._mutations.add("append", self._append)

    def config(self) -> dict[str, Any]:
        return {"members": self.members, "noise": self.noise, "error_limit": self.error_limit}

    @property
    def mutations(self) -> Mapping[str, Mutation]:
        return self._mutations

    def _append(self, genome: Genome, rng: np.random.Generator) -> Genome:
        assert isinstance(genome, PartsGenome)
        kind = self.KINDS[int(rng.integers(len(self.KINDS)))]
        return PartsGenome((*genome.parts, f"{kind}-{int(rng.integers(1000))}"))

    def initial_population(self, rng: np.random.Generator, size: int) -> list[Genome]:
        return [PartsGenome(), *(PartsGenome(tuple(m)) for m in self.members)]

    def sample(self, rng: np.random.Generator) -> Genome:
        return self._append(PartsGenome(), rng)

    def parts(self, genome: Genome) -> list[str]:
        assert isinstance(genome, PartsGenome)
        return list(genome.parts)

    def keep_parts(self, genome: Genome, kept: Sequence[int]) -> Genome:
        assert isinstance(genome, PartsGenome)
        return PartsGenome(tuple(genome.parts[i] for i in kept))

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        assert isinstance(genome, PartsGenome)
        kinds = [p.split("-", 1)[0] for p in genome.parts]
        if "needs" in kinds and "fast" not in kinds:
            raise RuntimeError("a needs part refers to a fast part that is not there")
        cost = max(0.05, 1.0 - 0.4 * kinds.count("fast") + 0.1 * kinds.count("slow") - 0.3 * ("spare" in kinds))
        error = 0.05 * kinds.count("costly")
        jitter = 1.0 + self.noise * float(np.random.default_rng(context.seed).uniform(-1, 1))
        constraints = {"error_limit": error - self.error_limit} if self.error_limit is not None else {}
        return Evaluation(Status.OK, {"cost": cost * jitter, "error": error}, constraints, metrics={"true_cost": cost})

    def finalize(self, members: Sequence[tuple[str, Evaluation]]) -> dict[str, dict[str, Any]]:
        return {key: {"test_error": evaluation.objectives["error"]} for key, evaluation in members}

    def export_member(self, key: str, genome: Genome, evaluation: Evaluation, out_dir: Path, *,
                      claimed: Mapping[str, float] | None = None, formats: Sequence[str] = (),
                      seed: int | None = None) -> dict[str, Any]:
        assert isinstance(genome, PartsGenome)
        if any(p.startswith("slow-") for p in genome.parts):
            raise EvaluationError(f"member {key[:12]} holds a slow part, which this toy domain cannot export")
        out_dir.mkdir(parents=True, exist_ok=True)
        artifact = out_dir / "parts.json"
        artifact.write_text(json.dumps(list(genome.parts)))
        return {"artifact": str(artifact), "claimed": dict(claimed or {}), "seed": seed}


@register_domain
class SphereDomain(VectorToyDomain):
    """One objective: minimize the squared distance of (x, y) in [0, 1]^2 to `CENTER`. Operator
    ``step`` moves by a small normal step; the engine, the algorithms and the report must work
    with a front of one objective (its members tie on the best value)."""

    name = "sphere"
    CENTER = (0.3, 0.7)

    def __init__(self) -> None:
        super().__init__((Objective("distance", reference=2.5),),
                         step=lambda g, rng: _vector(np.clip(np.array(g.values) + rng.normal(0, 0.05, 2), 0, 1)))  # type: ignore[attr-defined]

    def evaluate(self, genome: Genome, context: EvalContext) -> Evaluation:
        x, y = genome.values  # type: ignore[attr-defined]
        return Evaluation(Status.OK, {"distance": (x - self.CENTER[0]) ** 2 + (y - self.CENTER[1]) ** 2})
