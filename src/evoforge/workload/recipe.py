"""The training recipe: optimizer, learning rate, loss and regularizer weights.

Pure data shared by the baseline's training (a task's ``training``) and the PETRA genome, whose
`TRAINING_SPACE` is the searchable range of each setting.
"""

from __future__ import annotations

import dataclasses

from evoforge.genome import ParamSpec

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
CLASSIFICATION_LOSSES = ("cross_entropy", "label_smoothing", "focal")
REGRESSION_LOSSES = ("mse", "huber", "log_cosh")

TRAINING_SPACE: tuple[ParamSpec, ...] = (
    ParamSpec("optimizer", "choice", choices=OPTIMIZERS),
    ParamSpec("lr", "log", 1e-4, 1e-2),
    ParamSpec("loss", "choice", choices=CLASSIFICATION_LOSSES + REGRESSION_LOSSES),
    ParamSpec("hoyer_weight", "float", 0.0, 10.0),
    ParamSpec("ortho_weight", "float", 0.0, 10.0),
    ParamSpec("weight_decay", "log", 1e-6, 1e-2),
)


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
