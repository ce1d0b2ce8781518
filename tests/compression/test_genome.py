import pytest

from evoforge.compression.genome import STAGE_SPACES, PipelineGenome, Stage, TrainingSettings
from evoforge.errors import ConfigError
from evoforge.genome import genome_from_json

Q = {"mode": "static", "per_channel": True, "keep_float_edges": False, "epochs": 0}
P = {"importance": "l2", "ratio": 0.5, "steps": 2, "allocation": "global", "round_to": 8, "epochs": 1}


def test_round_trip_and_hash():
    g = PipelineGenome((Stage.make("prune", **P), Stage.make("quantize", **Q)), TrainingSettings(optimizer="sgd", lr=0.002))
    back = genome_from_json(g.to_json())
    assert back == g and back.content_hash == g.content_hash
    assert g.content_hash != PipelineGenome((Stage.make("quantize", **Q),)).content_hash


@pytest.mark.parametrize(
    "stages, message",
    [
        ([Stage.make("quantize", **Q), Stage.make("prune", **P)], "must be last"),
        ([Stage.make("quantize", **Q), Stage.make("quantize", **Q)], "at most one quantize"),
        ([Stage.make("finetune", epochs=1)] * 5, "at most 4 stages"),
    ],
)
def test_pipeline_rules(stages, message):
    with pytest.raises(ConfigError, match=message):
        PipelineGenome(tuple(stages))


def test_stage_validation_names_the_bad_value():
    with pytest.raises(ConfigError, match="prune.ratio=1.5 is out of range"):
        Stage.make("prune", **{**P, "ratio": 1.5})
    with pytest.raises(ConfigError, match="unknown stage 'distill'; valid stages: finetune, lowrank, prune, quantize"):
        Stage.make("distill")
    with pytest.raises(ConfigError, match="missing"):
        Stage.make("prune", ratio=0.5)
    with pytest.raises(ConfigError, match="importance='l3'"):
        Stage.make("prune", **{**P, "importance": "l3"})
    with pytest.raises(ConfigError, match="training.lr"):
        PipelineGenome(training=TrainingSettings(lr=5.0))


def test_every_stage_space_is_consistent():
    for kind, specs in STAGE_SPACES.items():
        names = [s.name for s in specs]
        assert len(names) == len(set(names)), kind
        for s in specs:
            assert (s.kind in ("choice",)) == bool(s.choices), (kind, s.name)
