"""Stage transforms: each turns a model into a compressed model according to one `Stage`.

A transform has the signature ``(model, stage, ctx) -> model``; it may modify ``model`` in place
and returns the model to use next (possibly a new object). `apply_pipeline` runs a genome's stages
in order on a model the caller has already copied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from evoforge.compression.genome import PipelineGenome, Stage, TrainingSettings
from evoforge.registry import Registry
from evoforge.workload.data import Splits
from evoforge.workload.training import observe_forward

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclasses.dataclass(frozen=True)
class StageContext:
    """Everything a stage needs besides the model and its own hyperparameters.

    ``protected`` names the modules (input and output layers) whose channels must survive:
    pruning never removes their channels, low-rank leaves them dense, quantization may keep
    them in float. ``example_input`` is a batch of one (in the model's input structure) on
    ``device``.
    """

    data: Splits
    training: TrainingSettings
    example_input: Any
    seed: int
    protected: tuple[str, ...] = ()
    device: str = "cpu"
    batch_size: int = 64


StageTransform = Callable[[nn.Module, Stage, StageContext], nn.Module]
STAGES: Registry[StageTransform] = Registry("stage")


def apply_stage(model: nn.Module, stage: Stage, ctx: StageContext) -> nn.Module:
    """Apply one stage; returns the transformed model (with `linear_layers` applied first)."""
    stage.validate()
    return STAGES[stage.kind](linear_layers(model), stage, ctx)


def linear_layers(model: nn.Module) -> nn.Module:
    """``model`` with every transformers ``Conv1D`` (GPT-2's projections: ``x @ weight + bias``
    with the weight stored as in x out) replaced in place by the `nn.Linear` that computes the
    same, so that pruning, low-rank and int8 see the linear layers they are. Recognised by
    shape, not imported: a module of that class name with ``nf`` outputs and a 2-D weight."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            weight, bias = getattr(child, "weight", None), getattr(child, "bias", None)
            if (type(child).__name__ != "Conv1D" or not isinstance(weight, nn.Parameter) or weight.dim() != 2
                    or getattr(child, "nf", None) != weight.shape[1]):
                continue
            linear = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None, device=weight.device, dtype=weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(weight.t())
                if bias is not None:
                    linear.bias.copy_(bias)
            linear.train(child.training)
            setattr(parent, name, linear)
    return model


def apply_pipeline(model: nn.Module, genome: PipelineGenome, ctx: StageContext) -> nn.Module:
    """Apply the genome's stages in order with the genome's training settings.

    Stage ``i`` runs with seed ``ctx.seed + i``. ``model`` is modified; pass a copy.
    """
    for i, stage in enumerate(genome.stages):
        model = apply_stage(model, stage, dataclasses.replace(ctx, training=genome.training, seed=ctx.seed + i))
    return model


def protected_layers(model: nn.Module, example_input: Any) -> tuple[str, ...]:
    """Names of the first and last parametrized layers run by ``model(example_input)``.

    Normalization layers do not count. An embedding table that comes first is not protected:
    its width is the model's hidden size, which structured pruning of a transformer narrows on
    purpose (the output layer still is). Returns one name for a one-layer model and ``()`` for
    a model without parametrized layers.
    """
    names = {module: name for name, module in model.named_modules()}
    order: list[str] = []

    def record(module: nn.Module, args: object, output: object) -> None:
        name = names[module]
        if name not in order:
            order.append(name)

    layers = [m for m in model.modules() if not isinstance(m, _NORM_TYPES) and any(True for _ in m.parameters(recurse=False))]
    observe_forward(model, example_input, layers, record)
    modules = dict(model.named_modules())
    first = [] if order and isinstance(modules[order[0]], (nn.Embedding, nn.EmbeddingBag)) else order[:1]
    return tuple(dict.fromkeys(first + order[-1:]))


from evoforge.compression.stages import finetune, lowrank, prune, quantize  # noqa: E402,F401  (register the transforms)

__all__ = ["STAGES", "StageContext", "StageTransform", "apply_pipeline", "apply_stage", "linear_layers", "protected_layers"]
