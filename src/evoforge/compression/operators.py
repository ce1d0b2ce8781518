"""PETRA's mutation operators over `PipelineGenome`: local, structural and global.

Each operator is a pure function ``(genome, rng) -> genome`` that always returns a valid
genome (an operator that cannot apply falls back to one that can, and says so in its name
only through the result). The search adapts their probabilities from their success.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evoforge.compression.genome import (
    CLASSIFICATION_LOSSES,
    IMPORTANCES,
    MAX_STAGES,
    OPTIMIZERS,
    QUANT_MODES,
    REGRESSION_LOSSES,
    STAGE_SPACES,
    TRAINING_SPACE,
    PipelineGenome,
    Stage,
    TrainingSettings,
)
from evoforge.errors import ConfigError
from evoforge.genome import ParamSpec
from evoforge.registry import Registry

PipelineMutation = Callable[[PipelineGenome, np.random.Generator], PipelineGenome]


def sample_value(spec: ParamSpec, rng: np.random.Generator) -> Any:
    """A uniform draw from the parameter's space (log-uniform for ``log``)."""
    if spec.kind == "float":
        return round(float(rng.uniform(spec.low, spec.high)), 4)
    if spec.kind == "log":
        return float(f"{math.exp(rng.uniform(math.log(spec.low), math.log(spec.high))):.4g}")
    if spec.kind == "int":
        return int(rng.integers(int(spec.low), int(spec.high) + 1))
    if spec.kind == "bool":
        return bool(rng.random() < 0.5)
    return spec.choices[int(rng.integers(len(spec.choices)))]


def fine_tuning_rate(training_lr: float, rng: np.random.Generator) -> float:
    """A log-uniform draw between ``training_lr / 10`` and ``training_lr``, clipped to the lr's
    searchable range."""
    spec = next(s for s in TRAINING_SPACE if s.name == "lr")
    low, high = max(training_lr / 10, spec.low), min(max(training_lr, spec.low), spec.high)
    return float(sample_value(dataclasses.replace(spec, low=low, high=high), rng))


def step_value(spec: ParamSpec, value: Any, rng: np.random.Generator) -> Any:
    """A local move: gaussian step for continuous values (in log space for ``log``), a
    neighbour for ordinal ones, a different choice for categorical ones and bools."""
    if spec.kind == "float":
        sigma = 0.1 * (spec.high - spec.low)
        return round(float(np.clip(value + rng.normal(0, sigma), spec.low, spec.high)), 4)
    if spec.kind == "log":
        lo, hi = math.log(spec.low), math.log(spec.high)
        moved = float(np.clip(math.log(value) + rng.normal(0, 0.1 * (hi - lo)), lo, hi))
        return float(f"{math.exp(moved):.4g}")
    if spec.kind == "int":
        if spec.low == spec.high:
            return value
        options = [v for v in (value - 1, value + 1) if spec.low <= v <= spec.high]
        return int(options[int(rng.integers(len(options)))])
    if spec.kind == "bool":
        return not value
    if spec.ordinal:
        i = spec.choices.index(value)
        options = [j for j in (i - 1, i + 1) if 0 <= j < len(spec.choices)]
        return spec.choices[options[int(rng.integers(len(options)))]]
    others = [c for c in spec.choices if c != value]
    return others[int(rng.integers(len(others)))] if others else value


EPOCH_COST = {("lowrank", "reg_epochs"): 1.5, ("quantize", "epochs"): 2.0}
"""How much one epoch of a stage costs in epochs of plain training (factorized and fake-quantized
training are slower); every other epoch count costs 1."""


def uses_training_settings(genome: PipelineGenome) -> bool:
    """True when the training settings can change the result: some stage trains, or a pruning
    importance takes gradients of the loss."""
    return training_epochs(genome) > 0 or any(s.kind == "prune" and s["importance"] in ("taylor", "hessian") for s in genome.stages)


INERT_VALUES = {"epochs": 0, "per_channel": True, "keep_float_edges": False}
"""The value the canonical form gives a setting where it is inert (`inert_settings`)."""


def inert_settings(stage: Stage) -> frozenset[str]:
    """The stage's settings that cannot change its result: a quantize stage's epochs unless it
    is QAT (only QAT trains), its per_channel in weight_only mode (int8 weight-only keeps
    one scale per output row either way), and both its int8 flags in bf16 mode."""
    inert = set()
    if stage.kind == "quantize" and stage["mode"] != "qat":
        inert.add("epochs")
    if stage.kind == "quantize" and stage["mode"] in ("weight_only", "bf16"):
        inert.add("per_channel")
    if stage.kind == "quantize" and stage["mode"] == "bf16":
        inert.add("keep_float_edges")
    return frozenset(inert)


def training_epochs(genome: PipelineGenome) -> float:
    """The pipeline's training in epochs of plain training of the baseline (an upper bound on its
    cost: pruned models train faster)."""
    total = 0.0
    for stage in genome.stages:
        for name, value in stage.params:
            if name in ("epochs", "reg_epochs") and name not in inert_settings(stage):
                total += EPOCH_COST.get((stage.kind, name), 1.0) * value
    return total


SCREENING_MIN_EPOCHS = 2
"""A screening keeps at least this many of each epoch count (or all of a smaller one). The first
epochs after a structural change decide most of the recovery: on digits-cnn a quarter of the epochs
(one after pruning) put 9 of 66 pipelines feasible at full fidelity more than 5 points over the
limit, the floor 3, and it kept the pipeline that dominated the front (BENCHMARKS.md, "Search cost")."""


def at_fidelity(genome: PipelineGenome, fraction: float, min_epochs: int = SCREENING_MIN_EPOCHS) -> PipelineGenome:
    """``genome`` with every epoch count scaled by ``fraction`` (rounded half up, never below its
    range's minimum), but never below ``min_epochs`` or its own value if smaller: what a
    screening evaluation trains (`evoforge.search.fidelity`)."""
    if fraction >= 1.0:
        return genome
    stages = []
    for stage in genome.stages:
        changes = {p.name: max(int(p.low), math.floor(fraction * stage[p.name] + 0.5), min(stage[p.name], min_epochs))
                   for p in STAGE_SPACES[stage.kind] if p.name in ("epochs", "reg_epochs")}
        stages.append(stage.replace(**changes) if changes else stage)
    return dataclasses.replace(genome, stages=tuple(stages))


def without_inert_settings(genome: PipelineGenome) -> PipelineGenome:
    """``genome`` with every inert setting of its stages (`inert_settings`) at its `INERT_VALUES`."""
    stages = tuple(s.replace(**{name: INERT_VALUES[name] for name in inert_settings(s)}) for s in genome.stages)
    return genome if stages == genome.stages else dataclasses.replace(genome, stages=stages)


def pipeline_features(genome: PipelineGenome) -> dict[str, float | str]:
    """What a model-based search learns from (`evoforge.search.surrogate`): the stage sequence,
    each kind's settings (of its first stage of that kind), the share of channels all pruning
    keeps, the pipeline's training in epochs, and the training settings where they matter
    (log10 of the log-scaled ones). Inert settings (`inert_settings`) are left out."""
    features: dict[str, float | str] = {"stages": " -> ".join(s.kind for s in genome.stages) or "none",
                                        "training epochs": training_epochs(genome)}
    kept = 1.0
    for stage in genome.stages:
        if stage.kind == "prune":
            kept *= 1.0 - stage["ratio"]
        for name, value in stage.params:
            key = f"{stage.kind} {name}"
            if key not in features and name not in inert_settings(stage):
                features[key] = str(value) if isinstance(value, bool) else value
    if any(s.kind == "prune" for s in genome.stages):
        features["prune kept"] = kept
    if uses_training_settings(genome):
        for spec in TRAINING_SPACE:
            value = getattr(genome.training, spec.name)
            features[f"training {spec.name}"] = math.log10(max(value, spec.low)) if spec.kind == "log" else value
    return features


EXCLUDABLE = (*sorted(STAGE_SPACES), *(f"prune:{i}" for i in IMPORTANCES), *(f"quantize:{m}" for m in QUANT_MODES))
"""What a run may leave out of its search space by name (`SearchSpace.without`): a stage kind,
a pruning importance or a quantize mode, spelled as the probe names them."""


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What the search may draw for one model: stage kinds, pruning importances and int8 modes
    (all by default; `evoforge.compression.probe` narrows them to what works on the model), and
    ``max_epochs``, the most training (see `training_epochs`) a pipeline may hold so that it
    finishes within the evaluation timeout (None: no limit)."""

    kinds: tuple[str, ...] = tuple(sorted(STAGE_SPACES))
    importances: tuple[str, ...] = IMPORTANCES
    quant_modes: tuple[str, ...] = QUANT_MODES
    max_epochs: float | None = None

    def __post_init__(self) -> None:
        for name, values, valid in (("kinds", self.kinds, STAGE_SPACES), ("importances", self.importances, IMPORTANCES),
                                    ("quant_modes", self.quant_modes, QUANT_MODES)):
            bad = sorted(set(values) - set(valid))
            if bad:
                raise ConfigError(f"search space {name} {bad} are unknown; valid: {', '.join(valid)}")
        kinds = [k for k in self.kinds if not (k == "prune" and not self.importances) and not (k == "quantize" and not self.quant_modes)]
        object.__setattr__(self, "kinds", tuple(sorted(kinds)))

    def stage_space(self, kind: str) -> tuple[ParamSpec, ...]:
        """The stage's hyperparameters with their choices narrowed to this space."""
        narrowed = {"importance": self.importances, "mode": self.quant_modes}
        return tuple(
            dataclasses.replace(p, choices=tuple(c for c in p.choices if c in narrowed[p.name])) if p.name in narrowed else p
            for p in STAGE_SPACES[kind]
        )

    def allows(self, genome: PipelineGenome) -> bool:
        """True when every stage of ``genome`` lies in this space and its training fits."""
        if self.max_epochs is not None and training_epochs(genome) > self.max_epochs:
            return False
        for stage in genome.stages:
            if stage.kind not in self.kinds:
                return False
            if stage.kind == "prune" and stage["importance"] not in self.importances:
                return False
            if stage.kind == "quantize" and stage["mode"] not in self.quant_modes:
                return False
        return True

    def fit(self, genome: PipelineGenome) -> PipelineGenome:
        """``genome`` with its epoch counts lowered, largest cost first, until its training fits
        ``max_epochs`` (stages that cannot shrink enough are dropped from the front)."""
        if self.max_epochs is None:
            return genome
        stages = list(genome.stages)
        while stages and training_epochs(dataclasses.replace(genome, stages=tuple(stages))) > self.max_epochs:
            lowerable = [
                (EPOCH_COST.get((s.kind, p.name), 1.0) * s[p.name], i, p.name)
                for i, s in enumerate(stages) for p in STAGE_SPACES[s.kind]
                if p.name in ("epochs", "reg_epochs") and s[p.name] > p.low
            ]
            if not lowerable:
                stages.pop(0)
                continue
            _, i, name = max(lowerable, key=lambda c: (c[0], -c[1]))
            stages[i] = stages[i].replace(**{name: stages[i][name] - 1})
        return dataclasses.replace(genome, stages=tuple(stages))

    def without(self, names: Sequence[str]) -> SearchSpace:
        """This space less what ``names`` name (each one of `EXCLUDABLE`): a stage kind,
        ``prune:<importance>`` or ``quantize:<mode>``."""
        gone = set(names)
        return dataclasses.replace(
            self,
            kinds=tuple(k for k in self.kinds if k not in gone),
            importances=tuple(i for i in self.importances if f"prune:{i}" not in gone),
            quant_modes=tuple(m for m in self.quant_modes if f"quantize:{m}" not in gone),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kinds": list(self.kinds), "importances": list(self.importances), "quant_modes": list(self.quant_modes),
                "max_epochs": self.max_epochs}

    @classmethod
    def from_dict(cls, data: Any) -> SearchSpace:
        data = dict(data)
        return cls(**{k: tuple(v) for k, v in data.items() if k != "max_epochs"}, max_epochs=data.get("max_epochs"))


RATE_DRIFT = 0.5
"""The chance that a structural or local mutation of a pipeline that trains also takes a
`PipelineOperators.learning_rate` step. A child otherwise inherits its parent's rate, and only the
``training`` operator (one draw in four of its offspring) moves it: the warm starts fine-tune at the
task's training rate and win early, and on series-regression one run in five then kept that rate in
nearly all of its 200 evaluations and ended with the worst front; with the drift none did
(BENCHMARKS.md, "Search against peers")."""


QUANTIZE_REDRAWS = 8
"""Draws the ``quantize`` operator makes for a quantize stage unlike the one it replaces."""


@dataclasses.dataclass(frozen=True)
class PipelineOperators:
    """The operator set for one task type (losses differ between classification and regression)
    over one `SearchSpace`. With ``base`` (the task's training settings), a pipeline whose result
    cannot depend on its training settings carries ``base``: changing the settings of such a
    pipeline gives the parent back, which the engine draws again instead of evaluating a copy.
    ``rate_drift`` is the chance that a non-``training`` operator also steps the learning rate of
    a pipeline that trains (`RATE_DRIFT`). ``quantize_operator`` adds the ``quantize`` operator
    where the space can quantize (off only for runs stored before it existed)."""

    task_type: str
    space: SearchSpace = SearchSpace()
    base: TrainingSettings | None = None
    rate_drift: float = RATE_DRIFT
    quantize_operator: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate_drift <= 1.0:
            raise ConfigError(f"rate_drift must be in [0, 1], got {self.rate_drift}")

    def canonical(self, genome: PipelineGenome) -> PipelineGenome:
        """``genome`` fitted to the space, with the settings that cannot change its result fixed:
        a quantize stage's inert settings (`inert_settings`) at their `INERT_VALUES`, and
        ``base`` training settings where they cannot matter. Two pipelines that would give the same model are thus one genome."""
        genome = self.space.fit(without_inert_settings(genome))
        if self.base is not None and genome.training != self.base and not uses_training_settings(genome):
            genome = dataclasses.replace(genome, training=self.base)
        return genome

    def random_stage(self, kind: str, rng: np.random.Generator) -> Stage:
        return Stage.make(kind, **{spec.name: sample_value(spec, rng) for spec in self.space.stage_space(kind)})

    def stage_kinds(self, position: int, stages: Sequence[Stage]) -> list[str]:
        """Stage kinds allowed at ``position`` of the pipeline after insertion there."""
        has_quant = any(s.kind == "quantize" for s in stages)
        at_end = position == len(stages)
        kinds = [k for k in self.space.kinds if k != "quantize"]
        if at_end and not has_quant and "quantize" in self.space.kinds:
            kinds.append("quantize")
        return kinds

    @property
    def losses(self) -> tuple[str, ...]:
        return CLASSIFICATION_LOSSES if self.task_type == "classification" else REGRESSION_LOSSES

    def registry(self) -> Registry[PipelineMutation]:
        """The operators, each followed by `canonical` (and all but ``training`` by the rate drift)."""
        reg: Registry[PipelineMutation] = Registry("mutation operator")
        structural = ["local", "insert", "remove", "swap", "replace"]
        if self.quantize_operator and "quantize" in self.space.kinds:
            structural.append("quantize")
        for name in structural:
            reg.add(name, self._fitted(getattr(self, name), drift=True))
        reg.add("training", self._fitted(self.training, drift=False))
        return reg

    def _fitted(self, operator: PipelineMutation, *, drift: bool) -> PipelineMutation:
        def apply(genome: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
            child = operator(genome, rng)
            if drift and self.rate_drift > 0 and uses_training_settings(child) and rng.random() < self.rate_drift:
                child = self.learning_rate(child, rng)
            return self.canonical(child)

        return apply

    # --------------------------------------------------------------- local
    def local(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        """Move one hyperparameter of one stage."""
        if not g.stages:
            return self.insert(g, rng)
        i = int(rng.integers(len(g.stages)))
        stage = g.stages[i]
        specs = self.space.stage_space(stage.kind) if stage.kind in self.space.kinds else STAGE_SPACES[stage.kind]
        specs = tuple(p for p in specs if p.name not in inert_settings(stage))
        spec = specs[int(rng.integers(len(specs)))]
        new = stage.replace(**{spec.name: step_value(spec, stage[spec.name], rng)})
        return dataclasses.replace(g, stages=g.stages[:i] + (new,) + g.stages[i + 1 :])

    # --------------------------------------------------------------- structural
    def insert(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        """Insert a random stage at a random valid position."""
        if len(g.stages) >= MAX_STAGES:
            return self.replace(g, rng)
        limit = len(g.stages) - (1 if g.stages and g.stages[-1].kind == "quantize" else 0)
        pos = int(rng.integers(limit + 1))
        kinds = self.stage_kinds(pos, g.stages)
        stage = self.random_stage(kinds[int(rng.integers(len(kinds)))], rng)
        return dataclasses.replace(g, stages=g.stages[:pos] + (stage,) + g.stages[pos:])

    def remove(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        """Remove one stage."""
        if not g.stages:
            return self.insert(g, rng)
        i = int(rng.integers(len(g.stages)))
        return dataclasses.replace(g, stages=g.stages[:i] + g.stages[i + 1 :])

    def swap(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        """Swap two adjacent stages (quantize stays last)."""
        movable = [i for i in range(len(g.stages) - 1) if g.stages[i + 1].kind != "quantize" and g.stages[i].kind != g.stages[i + 1].kind]
        if not movable:
            return self.local(g, rng) if g.stages else self.insert(g, rng)
        i = movable[int(rng.integers(len(movable)))]
        s = list(g.stages)
        s[i], s[i + 1] = s[i + 1], s[i]
        return dataclasses.replace(g, stages=tuple(s))

    def replace(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        """Replace one stage by a random stage of another kind."""
        if not g.stages:
            return self.insert(g, rng)
        i = int(rng.integers(len(g.stages)))
        rest = g.stages[:i] + g.stages[i + 1 :]
        kinds = [k for k in self.stage_kinds(i if i < len(rest) else len(rest), rest) if k != g.stages[i].kind]
        if i < len(rest):  # not last: no quantize
            kinds = [k for k in kinds if k != "quantize"]
        if not kinds:
            return self.local(g, rng)
        new = self.random_stage(kinds[int(rng.integers(len(kinds)))], rng)
        return dataclasses.replace(g, stages=g.stages[:i] + (new,) + g.stages[i + 1 :])

    def quantize(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        """Append a random quantize stage to a float pipeline, or draw a quantized pipeline's
        quantize stage anew (its mode and flags). The other operators reach int8 only through
        ``insert`` or ``replace`` at the last position, one draw in many; this one makes "the
        float model that trained well, now in int8" a single step."""
        if not (g.stages and g.stages[-1].kind == "quantize"):
            if len(g.stages) >= MAX_STAGES:
                return self.local(g, rng)
            return dataclasses.replace(g, stages=g.stages + (self.random_stage("quantize", rng),))
        child = g
        for _ in range(QUANTIZE_REDRAWS):  # a draw can repeat the stage (few modes and flags)
            child = dataclasses.replace(g, stages=g.stages[:-1] + (self.random_stage("quantize", rng),))
            if self.canonical(child) != self.canonical(g):
                break
        return child

    # --------------------------------------------------------------- global
    def training(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        """Change one training setting: the optimizer, the learning rate, the loss or one
        regularizer weight, drawn uniformly. (One operator, so that the four kinds of training
        change together take one operator's share of the offspring, as the structural ones do.)"""
        change = (self.optimizer, self.learning_rate, self.loss, self.regularizer)[int(rng.integers(4))]
        return change(g, rng)

    def _training(self, g: PipelineGenome, **changes: Any) -> PipelineGenome:
        return dataclasses.replace(g, training=dataclasses.replace(g.training, **changes))

    def optimizer(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        others = [o for o in OPTIMIZERS if o != g.training.optimizer]
        return self._training(g, optimizer=others[int(rng.integers(len(others)))])

    def learning_rate(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        spec = next(s for s in TRAINING_SPACE if s.name == "lr")
        return self._training(g, lr=step_value(spec, g.training.lr, rng))

    def loss(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        others = [loss for loss in self.losses if loss != g.training.loss]
        return self._training(g, loss=others[int(rng.integers(len(others)))])

    def regularizer(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        name = ("hoyer_weight", "ortho_weight", "weight_decay")[int(rng.integers(3))]
        spec = next(s for s in TRAINING_SPACE if s.name == name)
        return self._training(g, **{name: step_value(spec, getattr(g.training, name), rng)})

    # --------------------------------------------------------------- sampling
    def sample(self, rng: np.random.Generator, *, base: TrainingSettings) -> PipelineGenome:
        """A random pipeline of 1-3 stages with the baseline's training settings except the
        learning rate, a `fine_tuning_rate` (fine-tuning a compressed model often wants a smaller
        step than training it did). The stages are drawn first."""
        g = PipelineGenome(training=base)
        for _ in range(int(rng.integers(1, 4))):
            g = self.insert(g, rng)
        return self.canonical(self._training(g, lr=fine_tuning_rate(base.lr, rng)))
