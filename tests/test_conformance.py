"""The conformance matrix: real architectures from their own libraries (random weights, no
downloads) through every compression stage, pruning importance and int8 mode, and through
evolve's import (exported, compiled with IREE and run: its outputs must match the model's), in the
default runtime (ONNX Runtime). Each case is probed when the run starts
(applied and run, the first pruning importance and every other kind exported) or refused with a
recorded reason; one of each stage kind and every int8 mode is then evaluated as a candidate, and
a float and an int8 export are reloaded in a fresh process and reproduce their recorded test
quality. `dict_mlp` runs in the default suite; `gru`, `bert` and the library architectures are
marked `matrix` (`make matrix`: about 15 minutes, each ONNX export of a torchvision CNN takes
~11 s; the attention-head tests below keep transformer pruning in the default suite). With
EVOFORGE_MATRIX_OUT set, the matrix is written there as JSON (docs/your-model.md shows it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from evoforge.compression.domain import CompressDomain  # noqa: E402
from evoforge.compression.genome import PipelineGenome  # noqa: E402
from evoforge.compression.probe import probe_stages  # noqa: E402
from evoforge.errors import ConfigError  # noqa: E402
from evoforge.layout import RunLayout  # noqa: E402
from evoforge.search.domain import EvalContext  # noqa: E402
from evoforge.workload.task import Task  # noqa: E402
from tests.support.architectures import ARCHITECTURES, dataset  # noqa: E402

FAST = ("dict_mlp",)
EVALUATED = ("prune:l1", "lowrank", "finetune", "quantize:dynamic", "quantize:static", "quantize:qat")
"""Probes also evaluated as candidates; the other importances prune the same shapes (the probe ran them)."""
REVERIFIED = ("finetune", "quantize:static")
TRANSFORMERS = ("bert", "distilbert", "vit")
MATRIX: dict[str, dict[str, str]] = {}

pytestmark = pytest.mark.usefixtures("single_thread")


def _needs(name: str) -> None:
    if name in TRANSFORMERS:
        pytest.importorskip("transformers")
    if name.startswith(("resnet", "mobilenet")):
        pytest.importorskip("torchvision.models")


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=[pytest.mark.slow, pytest.mark.matrix])
                                  for n in ARCHITECTURES])
def test_every_stage_runs_or_is_refused_with_a_reason(name: str, tmp_path: Path) -> None:
    _needs(name)
    arch = ARCHITECTURES[name]
    torch.manual_seed(0)
    task = Task(name, arch.build().eval(), dataset(arch), batch_size=16, latency_batch=4)
    domain = CompressDomain(task, latency_repeats=1, max_quality_drop=None)
    domain.attach(RunLayout(tmp_path))
    domain.prepare()
    refused = domain.baseline_record()["refused"]
    row: dict[str, str] = {}
    for probe, stage in probe_stages().items():
        if probe in refused:
            assert refused[probe].strip(), f"{name} {probe}: refused without a reason"
            row[probe] = "refused: " + refused[probe]
            continue
        if probe not in EVALUATED:
            row[probe] = "ok"
            continue
        genome = PipelineGenome((stage,), task.training)
        key = f"{probe.replace(':', '-')}"
        evaluation = domain.evaluate(genome, EvalContext(seed=1, artifact_dir=domain.layout.artifact_dir(key)))
        assert evaluation.ok, f"{name} {probe}: {evaluation.reason}"
        if probe in REVERIFIED:  # a fresh process per export: two kinds of artifact are enough
            recorded = domain.finalize([(key, evaluation)])[key]
            card = domain.export_member(key, genome, evaluation, tmp_path / "exports" / key, claimed=recorded)
            quality = {k: recorded[k] for k in card["test"]}
            assert card["test"] == pytest.approx(quality), f"{name} {probe}: the reloaded export scores differently"
        row[probe] = "ok"
    row["evolve import"] = _evolve_import(domain, tmp_path / "program")
    MATRIX[name] = row
    assert row["finetune"] == "ok" and row["prune:l1"] == "ok", row
    assert row["quantize:dynamic"] == "ok", row  # every one of these has Linear layers
    assert row["evolve import"].startswith("ok"), row  # IREE compiles each (GRU through ONNX)
    if name in TRANSFORMERS or name == "dict_mlp":
        assert row["lowrank"] == "ok", row
    if out := os.environ.get("EVOFORGE_MATRIX_OUT"):
        Path(out).write_text(json.dumps(MATRIX, indent=2))


def _evolve_import(domain: CompressDomain, directory: Path) -> str:
    """Export the baseline as evolve would (a predict program at batch 4), compile it with IREE and
    run it on the example batch: "ok (EXPORTER)" when its outputs match the model's, or why not."""
    pytest.importorskip("iree.compiler")
    import numpy as np

    from evoforge.mlir.iree_runner import VariantFailure, Worker, compile_program, run_program
    from evoforge.mlir.sources import read_meta, write_predict_program
    from evoforge.workload.task import baseline_model, load_splits

    splits = load_splits(domain.task, domain.layout.root)
    model = baseline_model(domain.task, splits, domain.layout.baseline, root=domain.layout.root)
    try:
        reference = write_predict_program(model, splits, directory, level="torch", batch_size=4, source="conformance")
        program = reference.program
        with Worker() as worker:
            vmfb = compile_program(program.text, input_type=program.input_type)
            outputs = run_program(vmfb, [[t.numpy() for t in reference.example]], worker=worker, function=program.entry)[0]
    except (ConfigError, VariantFailure) as exc:
        assert str(exc).strip()
        return f"refused: {str(exc).splitlines()[0][:200]}"
    with torch.no_grad():
        expected = reference.model(*reference.example)
    np.testing.assert_allclose(outputs[0], expected.numpy(), rtol=1e-3, atol=1e-4)
    return f"ok ({read_meta(directory)['exporter']})"


def _bert_setting() -> tuple[Any, Any, Any]:
    """The conformance BERT's architecture, its data splits and a stage context (classifier
    protected), after seeding torch with 0."""
    pytest.importorskip("transformers")
    from evoforge.compression.stages import StageContext
    from evoforge.workload.data import splits_from_mapping
    from evoforge.workload.recipe import TrainingSettings
    from evoforge.workload.task import example_input

    torch.manual_seed(0)
    arch = ARCHITECTURES["bert"]
    splits = splits_from_mapping(dataset(arch), task_type="classification", seed=0, what="data")
    ctx = StageContext(data=splits, training=TrainingSettings(), example_input=example_input(splits), seed=0,
                       protected=("classifier",))
    return arch, splits, ctx


def test_pruning_removes_whole_attention_heads() -> None:
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    arch, splits, ctx = _bert_setting()
    model = arch.build().eval()
    stage = Stage.make("prune", importance="l2", ratio=0.5, steps=2, allocation="uniform", round_to=1, epochs=0)
    pruned = apply_stage(model, stage, ctx)
    for layer in pruned.bert.encoder.layer:
        attention = layer.attention.self
        assert attention.num_attention_heads == 2 and attention.attention_head_size == 8  # whole heads, width kept
        assert attention.query.out_features == attention.key.out_features == attention.value.out_features == 16
        assert attention.all_head_size == 16
    x, _ = splits.val.take(5)
    assert pruned(**x).logits.shape == (5, 4)


def test_global_pruning_leaves_every_attention_layer_a_head() -> None:
    """Global allocation ranks heads across layers; torch-pruning has no floor per layer, and a
    bert-tokens candidate (prune to one head per layer, then prune globally) failed with a
    ZeroDivisionError once a layer had none."""
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    arch, splits, ctx = _bert_setting()
    model = arch.build().eval()
    initial = [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer]
    model = apply_stage(model, Stage.make("prune", importance="l2", ratio=0.6, steps=2, allocation="global", round_to=1,
                                          epochs=0), ctx)
    heads = [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer]
    assert min(heads) >= 1 and sum(heads) < sum(initial)  # heads are still pruned globally
    model = apply_stage(model, Stage.make("prune", importance="lamp", ratio=0.7622, steps=2, allocation="uniform",
                                          round_to=8, epochs=0), ctx)
    model = apply_stage(model, Stage.make("prune", importance="l2", ratio=0.8, steps=2, allocation="global", round_to=1,
                                          epochs=0), ctx)
    for layer in model.bert.encoder.layer:
        attention = layer.attention.self
        assert attention.num_attention_heads >= 1
        assert attention.all_head_size == attention.num_attention_heads * attention.attention_head_size
    x, _ = splits.val.take(5)
    assert model(**x).logits.shape == (5, 4)


@pytest.mark.parametrize("importance", ["taylor", "lamp"])
def test_pruning_after_low_rank_keeps_attention_heads_whole(importance: str) -> None:
    """Low-rank folds q/k/v into Linear pairs; pruning after it must still cut whole heads (a
    bert-tokens candidate failed with "shape '[64, 32, -1, 32]' is invalid" before)."""
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    arch, splits, ctx = _bert_setting()
    model = apply_stage(arch.build().eval(), Stage.make("lowrank", energy=0.8, reg_epochs=1, epochs=0), ctx)
    assert any(isinstance(layer.attention.self.query, torch.nn.Sequential) for layer in model.bert.encoder.layer)
    for ratio, steps in ((0.4, 2), (0.3, 3)):
        model = apply_stage(model, Stage.make("prune", importance=importance, ratio=ratio, steps=steps, allocation="uniform",
                                              round_to=4, epochs=0), ctx)
    for layer in model.bert.encoder.layer:
        attention = layer.attention.self
        widths = {p[-1].out_features if isinstance(p, torch.nn.Sequential) else p.out_features
                  for p in (attention.query, attention.key, attention.value)}
        assert widths == {attention.num_attention_heads * attention.attention_head_size}
    x, _ = splits.val.take(5)
    assert model(**x).logits.shape == (5, 4)
