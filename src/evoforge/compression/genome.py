"""The PETRA genome: an ordered list of compression stages plus global training settings.

Pure data. `STAGE_SPACES` declares every stage's hyperparameters (kind and range); mutation
operators read it, stage transforms (``evoforge.compression.stages``) apply it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from evoforge.errors import ConfigError
from evoforge.genome import Genome, ParamSpec, register_genome
from evoforge.workload.recipe import CLASSIFICATION_LOSSES as CLASSIFICATION_LOSSES
from evoforge.workload.recipe import OPTIMIZERS as OPTIMIZERS
from evoforge.workload.recipe import REGRESSION_LOSSES as REGRESSION_LOSSES
from evoforge.workload.recipe import TRAINING_SPACE as TRAINING_SPACE
from evoforge.workload.recipe import TrainingSettings as TrainingSettings

IMPORTANCES = ("l1", "l2", "lamp", "taylor", "hessian", "bn_scale", "random")
QUANT_MODES = ("dynamic", "static", "qat", "weight_only", "bf16")
"""Modes of the ``quantize`` stage: four int8 modes and ``bf16`` (weights and arithmetic in
bfloat16); which ones a run can draw depends on its runtime and processor."""
TORCH_AO_MODES = ("dynamic", "static", "qat")
"""The modes the stage applies in PyTorch (torch.ao), for runtimes that deploy torch.ao int8."""

STAGE_SPACES: dict[str, tuple[ParamSpec, ...]] = {
    "prune": (
        ParamSpec("importance", "choice", choices=IMPORTANCES),
        ParamSpec("ratio", "float", 0.1, 0.9),
        ParamSpec("steps", "int", 1, 4),
        ParamSpec("allocation", "choice", choices=("uniform", "global")),
        ParamSpec("round_to", "choice", choices=(1, 4, 8, 16), ordinal=True),
        ParamSpec("epochs", "int", 0, 10),
    ),
    "lowrank": (
        ParamSpec("energy", "float", 0.80, 0.999),
        ParamSpec("reg_epochs", "int", 1, 10),
        ParamSpec("epochs", "int", 0, 10),
    ),
    "quantize": (
        ParamSpec("mode", "choice", choices=QUANT_MODES),
        ParamSpec("per_channel", "bool"),
        ParamSpec("keep_float_edges", "bool"),
        ParamSpec("epochs", "int", 0, 5),
    ),
    "finetune": (ParamSpec("epochs", "int", 1, 20),),
}

MAX_STAGES = 4


@dataclasses.dataclass(frozen=True)
class Stage:
    """One compression stage: ``kind`` is a key of `STAGE_SPACES`; ``params`` holds every one of
    its hyperparameters as sorted (name, value) pairs."""

    kind: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, kind: str, **params: Any) -> Stage:
        if kind not in STAGE_SPACES:
            raise ConfigError(f"unknown stage {kind!r}; valid stages: {', '.join(sorted(STAGE_SPACES))}")
        stage = cls(kind, tuple(sorted(params.items())))
        stage.validate()
        return stage

    def __getitem__(self, name: str) -> Any:
        for key, value in self.params:
            if key == name:
                return value
        raise KeyError(f"stage {self.kind!r} has no parameter {name!r}")

    def replace(self, **params: Any) -> Stage:
        return Stage.make(self.kind, **{**dict(self.params), **params})

    def validate(self) -> None:
        space = {p.name: p for p in STAGE_SPACES[self.kind]}
        given = dict(self.params)
        missing, unknown = set(space) - set(given), set(given) - set(space)
        if missing or unknown:
            raise ConfigError(
                f"stage {self.kind!r} needs exactly the parameters {sorted(space)}; "
                f"missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        for name, value in given.items():
            space[name].validate(value, self.kind)


@register_genome
@dataclasses.dataclass(frozen=True)
class PipelineGenome(Genome):
    """Up to `MAX_STAGES` stages applied in order; at most one quantize stage, and it is last."""

    TYPE = "pipeline"
    VERSION = 1

    stages: tuple[Stage, ...] = ()
    training: TrainingSettings = TrainingSettings()

    def __post_init__(self) -> None:
        if len(self.stages) > MAX_STAGES:
            raise ConfigError(f"a pipeline holds at most {MAX_STAGES} stages, got {len(self.stages)}")
        kinds = [s.kind for s in self.stages]
        if kinds.count("quantize") > 1 or ("quantize" in kinds and kinds[-1] != "quantize"):
            raise ConfigError(f"stages {kinds}: at most one quantize stage is allowed and it must be last")
        for stage in self.stages:
            stage.validate()
        self.training.validate()
        if not math.isfinite(self.training.lr):
            raise ConfigError("training.lr must be finite")

    def to_data(self) -> dict[str, Any]:
        return {
            "stages": [{"kind": s.kind, "params": dict(s.params)} for s in self.stages],
            "training": dataclasses.asdict(self.training),
        }

    @classmethod
    def from_data(cls, data: dict[str, Any], version: int) -> PipelineGenome:
        if version != cls.VERSION:
            raise ConfigError(f"pipeline genome version {version} is not supported (this evoforge reads {cls.VERSION})")
        stages = tuple(Stage.make(s["kind"], **s["params"]) for s in data.get("stages", []))
        return cls(stages=stages, training=TrainingSettings(**data.get("training", {})))
