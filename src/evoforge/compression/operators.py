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
    MAX_STAGES,
    OPTIMIZERS,
    REGRESSION_LOSSES,
    STAGE_SPACES,
    TRAINING_SPACE,
    ParamSpec,
    PipelineGenome,
    Stage,
    TrainingSettings,
)
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


def random_stage(kind: str, rng: np.random.Generator) -> Stage:
    return Stage.make(kind, **{spec.name: sample_value(spec, rng) for spec in STAGE_SPACES[kind]})


def _stage_kinds(position: int, stages: Sequence[Stage]) -> list[str]:
    """Stage kinds allowed at ``position`` of the pipeline after insertion there."""
    has_quant = any(s.kind == "quantize" for s in stages)
    at_end = position == len(stages)
    kinds = [k for k in sorted(STAGE_SPACES) if k != "quantize"]
    if at_end and not has_quant:
        kinds.append("quantize")
    return kinds


@dataclasses.dataclass(frozen=True)
class PipelineOperators:
    """The operator set for one task type (losses differ between classification and regression)."""

    task_type: str

    @property
    def losses(self) -> tuple[str, ...]:
        return CLASSIFICATION_LOSSES if self.task_type == "classification" else REGRESSION_LOSSES

    def registry(self) -> Registry[PipelineMutation]:
        reg: Registry[PipelineMutation] = Registry("mutation operator")
        for name in ("local", "insert", "remove", "swap", "replace", "optimizer", "learning_rate", "loss", "regularizer"):
            reg.add(name, getattr(self, name))
        return reg

    # --------------------------------------------------------------- local
    def local(self, g: PipelineGenome, rng: np.random.Generator) -> PipelineGenome:
        """Move one hyperparameter of one stage."""
        if not g.stages:
            return self.insert(g, rng)
        i = int(rng.integers(len(g.stages)))
        stage = g.stages[i]
        specs = STAGE_SPACES[stage.kind]
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
        kinds = _stage_kinds(pos, g.stages)
        stage = random_stage(kinds[int(rng.integers(len(kinds)))], rng)
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
        kinds = [k for k in _stage_kinds(i if i < len(rest) else len(rest), rest) if k != g.stages[i].kind]
        if i < len(rest):  # not last: no quantize
            kinds = [k for k in kinds if k != "quantize"]
        new = random_stage(kinds[int(rng.integers(len(kinds)))], rng)
        return dataclasses.replace(g, stages=g.stages[:i] + (new,) + g.stages[i + 1 :])

    # --------------------------------------------------------------- global
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
        """A random pipeline of 1-3 stages with the baseline's training settings."""
        g = PipelineGenome(training=base)
        for _ in range(int(rng.integers(1, 4))):
            g = self.insert(g, rng)
        return g
