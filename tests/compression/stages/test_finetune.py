from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from evoforge.compression.genome import STAGE_SPACES, PipelineGenome, Stage, TrainingSettings
from evoforge.compression.stages import STAGES, apply_pipeline, apply_stage, protected_layers
from evoforge.errors import ConfigError, UnknownNameError
from tests.support.torch_fixtures import ResCNN, accuracy, cnn1d, make_ctx, mlp

pytestmark = pytest.mark.usefixtures("single_thread")


def test_every_stage_kind_is_registered() -> None:
    assert set(STAGES) == set(STAGE_SPACES)
    with pytest.raises(UnknownNameError, match="finetune"):
        STAGES["distill"]


def test_protected_layers_are_the_first_and_last_parametrized_layers() -> None:
    assert protected_layers(ResCNN(), torch.zeros(1, 1, 8, 8)) == ("stem.0", "fc")
    assert protected_layers(mlp(), torch.zeros(1, 1, 8, 8)) == ("1", "5")
    assert protected_layers(cnn1d(), torch.zeros(1, 1, 64)) == ("0", "8")
    assert protected_layers(nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2)), torch.zeros(2, 4)) == ("1",)
    assert protected_layers(nn.ReLU(), torch.zeros(1, 4)) == ()
    tokens = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(8, 3))
    assert protected_layers(tokens, torch.zeros(2, 5, dtype=torch.long)) == ("2",)  # an embedding's width may shrink


def test_finetune_improves_an_undertrained_model_deterministically(digits) -> None:
    torch.manual_seed(0)
    model = mlp()
    ctx = make_ctx(model, digits)
    stage = Stage.make("finetune", epochs=2)
    a = apply_stage(copy.deepcopy(model), stage, ctx)
    b = apply_stage(copy.deepcopy(model), stage, ctx)
    assert accuracy(a, digits.val) > accuracy(model, digits.val) + 0.5
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_pipeline_applies_stages_in_order_with_the_genome_settings(rescnn: nn.Module, digits) -> None:
    genome = PipelineGenome(
        stages=(
            Stage.make("prune", importance="lamp", ratio=0.4, steps=1, allocation="global", round_to=4, epochs=1),
            Stage.make("lowrank", energy=0.95, reg_epochs=1, epochs=1),
            Stage.make("finetune", epochs=1),
            Stage.make("quantize", mode="static", per_channel=True, keep_float_edges=False, epochs=0),
        ),
        training=TrainingSettings(optimizer="adamw", lr=1e-3),
    )
    ctx = make_ctx(rescnn, digits)
    out = apply_pipeline(copy.deepcopy(rescnn), genome, ctx)
    assert isinstance(out, torch.fx.GraphModule)
    assert accuracy(out, digits.test) >= 0.85
    # the genome's loss is used, not the context's
    bad = dataclasses.replace(genome, training=TrainingSettings(loss="mse"))
    with pytest.raises(ConfigError, match="cross_entropy"):
        apply_pipeline(copy.deepcopy(rescnn), bad, ctx)
