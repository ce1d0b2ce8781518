"""The PETRA genome: an ordered list of compression stages plus global training settings.

Pure data. `STAGE_SPACES` declares every stage's hyperparameters (kind and range); mutation
operators read it, stage transforms (``evoforge.compression.stages``) apply it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from evoforge.errors import ConfigError
from evoforge.genome import Genome, register_genome

ParamKind = Literal["float", "log", "int", "choice", "bool"]


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One searchable hyperparameter: continuous (float/log), ordinal (int, or choice with
    ``ordinal=True``), categorical (choice) or bool."""

    name: str
    kind: ParamKind
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()
    ordinal: bool = False

    def validate(self, value: Any, where: str) -> None:
        if self.kind in ("float", "log"):
            if not isinstance(value, (int, float)) or not (self.low <= float(value) <= self.high):
                raise ConfigError(f"{where}.{self.name}={value!r} is out of range; use a number in [{self.low}, {self.high}]")
        elif self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not (self.low <= value <= self.high):
                raise ConfigError(f"{where}.{self.name}={value!r} is out of range; use an integer in [{int(self.low)}, {int(self.high)}]")
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{self.name}={value!r} must be true or false")
        elif value not in self.choices:
            raise ConfigError(f"{where}.{self.name}={value!r} is not valid; choose one of {list(self.choices)}")


IMPORTANCES = ("l1", "l2", "lamp", "taylor", "hessian", "bn_scale", "random")
QUANT_MODES = ("dynamic", "static", "qat")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
CLASSIFICATION_LOSSES = ("cross_entropy", "label_smoothing", "focal")
REGRESSION_LOSSES = ("mse", "huber", "log_cosh")

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

TRAINING_SPACE: tuple[ParamSpec, ...] = (
    ParamSpec("optimizer", "choice", choices=OPTIMIZERS),
    ParamSpec("lr", "log", 1e-4, 1e-2),
    ParamSpec("loss", "choice", choices=CLASSIFICATION_LOSSES + REGRESSION_LOSSES),
    ParamSpec("hoyer_weight", "float", 0.0, 10.0),
    ParamSpec("ortho_weight", "float", 0.0, 10.0),
    ParamSpec("weight_decay", "log", 1e-6, 1e-2),
)

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


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """Global training choices shared by every stage that trains."""

    optimizer: str = "adam"
    lr: float = 1e-3
    loss: str = "cross_entropy"
    hoyer_weight: float = 1.0
    ortho_weight: float = 1.0
    weight_decay: float = 1e-5

    def validate(self) -> None:
        for spec in TRAINING_SPACE:
            spec.validate(getattr(self, spec.name), "training")


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
