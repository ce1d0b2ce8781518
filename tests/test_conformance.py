"""The conformance matrix: real architectures from their own libraries (random weights, no
downloads) through every compression stage, pruning importance and int8 mode, and through
evolve's import (exported, compiled with IREE and run: its outputs must match the model's; then
one random edit of each kind applied, compiled and run), in the default runtime (ONNX Runtime).
Each case is probed when the run starts (applied and run, the first pruning importance and every
other kind exported) or refused with a recorded reason; one of each stage kind and every int8 mode
is then evaluated as a candidate, and a float and an int8 export are reloaded in a fresh process
and reproduce their recorded test quality. bf16 is exported and run in TorchScript and OpenVINO
(and captured for Inductor) on each. `dict_mlp` runs in the default suite; `gru`, `bert` and the
library architectures are marked `matrix` (`make matrix`: about 30 minutes, each ONNX export of a
torchvision CNN takes ~11 s; the attention-head tests below keep transformer pruning in the default
suite). With EVOFORGE_MATRIX_OUT set, the matrix is written there as JSON (docs/your-model.md
shows it)."""

from __future__ import annotations

import importlib.util
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
TRANSFORMERS = ("bert", "distilbert", "vit", "gpt2")
MATRIX: dict[str, dict[str, str]] = {}

pytestmark = pytest.mark.usefixtures("single_thread")


def _needs(name: str) -> None:
    if library := ARCHITECTURES[name].library:
        pytest.importorskip(library)


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=[pytest.mark.slow, pytest.mark.matrix,
                                                                              pytest.mark.timeout(1800)])
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
    row["evolve import"], row["evolve edits"] = _evolve_import(domain, tmp_path / "program")
    MATRIX[name] = row
    assert row["finetune"] == "ok" and row["quantize:dynamic"] == "ok", row
    assert row["prune:l1"] == "ok", row  # ShuffleNet and Swin block by block
    assert row["evolve import"].startswith("ok"), row  # IREE compiles each (GRU through ONNX)
    assert not row["evolve edits"].startswith("0 of"), row  # some edit of the program compiles and runs
    if name in TRANSFORMERS or name == "dict_mlp":
        assert row["lowrank"] == "ok", row
    if out := os.environ.get("EVOFORGE_MATRIX_OUT"):
        Path(out).write_text(json.dumps(MATRIX, indent=2))


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=[pytest.mark.slow, pytest.mark.matrix])
                                  for n in ARCHITECTURES])
def test_bf16_exports_and_runs_close_to_fp32_in_torchscript_and_openvino(name: str, tmp_path: Path) -> None:
    """bf16 (the quantize mode) on every architecture: exported, reloaded (OpenVINO reads its
    precision from the file), run at another batch, within 3% of the fp32 outputs' range; and
    captured for Inductor as its probe does (its C++ compile, tens of seconds, is left out)."""
    _needs(name)
    pytest.importorskip("openvino")
    import numpy as np

    from evoforge.runtimes import QuantSettings, get_runtime
    from evoforge.workload.inputs import InputSpec, call_model, take_rows, to_tensors

    arch = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = arch.build().eval()
    inputs = to_tensors(arch.data(np.random.default_rng(0), 6)[0])
    with torch.no_grad():
        expected = call_model(model, inputs).float()
    for runtime_name in ("torchscript", "openvino"):
        runtime = get_runtime(runtime_name)
        path = runtime.export(model, take_rows(inputs, slice(0, 2)), tmp_path / runtime.artifact_name, quant=QuantSettings("bf16"))
        with torch.no_grad():
            got = runtime.load(path, threads=1)(*InputSpec.of(inputs).flatten(inputs)).float()
        assert got.shape == expected.shape, f"{name} in {runtime_name}"
        drift = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-6))
        assert drift < 0.03, f"{name} in {runtime_name}: bf16 moved the outputs by {drift:.3f} of their range"
    if importlib.util.find_spec("torchao") is not None:
        get_runtime("inductor").check_export(model, take_rows(inputs, slice(0, 2)), quant=QuantSettings("bf16"))


def _evolve_import(domain: CompressDomain, directory: Path) -> tuple[str, str]:
    """Export the baseline as evolve would (a predict program at batch 4), compile it with IREE and
    run it on the example batch: "ok (EXPORTER)" when its outputs match the model's, or why not;
    then `_random_edits` on the program ("" when it did not import)."""
    pytest.importorskip("iree.compiler")
    import numpy as np

    from evoforge.mlir.iree_runner import VariantFailure, Worker, compile_program, run_program
    from evoforge.mlir.sources import read_meta, write_predict_program
    from evoforge.workload.task import baseline_model, load_splits

    splits = load_splits(domain.task, domain.layout.root)
    model = baseline_model(domain.task, splits, domain.layout.baseline, root=domain.layout.root)
    with Worker() as worker:
        try:
            reference = write_predict_program(model, splits, directory, level="torch", batch_size=4, source="conformance")
            program = reference.program
            vmfb = compile_program(program.text, input_type=program.input_type)
            example = [t.numpy() for t in reference.example]
            outputs = run_program(vmfb, [example], worker=worker, function=program.entry)[0]
        except (ConfigError, VariantFailure) as exc:
            assert str(exc).strip()
            return f"refused: {str(exc).splitlines()[0][:200]}", ""
        with torch.no_grad():
            expected = reference.model(*reference.example)
        np.testing.assert_allclose(outputs[0], expected.numpy(), rtol=1e-3, atol=1e-4)
        return f"ok ({read_meta(directory)['exporter']})", _random_edits(program, example, worker)


def _random_edits(program: Any, example: list[Any], worker: Any) -> str:
    """One random edit of each default kind (seeded, examples kept apart as a search draws them)
    applied to the program, compiled and run on the example batch: "K of N run", then the kinds
    that did not and why. An edit that finds no valid draw, fails to compile or gives non-finite
    outputs is a finding; any other exception (a crash of the edit or repair code) fails the test."""
    import numpy as np

    from evoforge.mlir.edits import EDIT_KINDS, EditError
    from evoforge.mlir.iree_runner import VariantFailure, compile_program, run_program
    from evoforge.mlir.mutate import apply_edits, random_edit

    rng = np.random.default_rng(0)
    failed: dict[str, str] = {}
    for kind in EDIT_KINDS:
        try:
            edit = random_edit(program, rng, kind, keep_examples_apart=True)
            vmfb = compile_program(apply_edits(program, [edit]), input_type=program.input_type)
            run_program(vmfb, [example], worker=worker, function=program.entry)
        except EditError as exc:
            failed[kind] = f"no edit ({str(exc).splitlines()[0][:80]})"
        except VariantFailure as exc:
            failed[kind] = f"{exc.failure.kind} ({exc.failure.message.splitlines()[0][:80] if exc.failure.message else ''})"
    summary = f"{len(EDIT_KINDS) - len(failed)} of {len(EDIT_KINDS)} run"
    return summary + "".join(f"; {kind}: {why}" for kind, why in failed.items())


def _setting(name: str = "bert", protected: tuple[str, ...] = ("classifier",)) -> tuple[Any, Any, Any]:
    """A conformance architecture, its data splits and a stage context (``protected`` kept),
    after seeding torch with 0."""
    pytest.importorskip(ARCHITECTURES[name].library or "torch")
    from evoforge.compression.stages import StageContext
    from evoforge.workload.data import splits_from_mapping
    from evoforge.workload.recipe import TrainingSettings
    from evoforge.workload.task import example_input

    torch.manual_seed(0)
    arch = ARCHITECTURES[name]
    splits = splits_from_mapping(dataset(arch), task_type="classification", seed=0, what="data")
    ctx = StageContext(data=splits, training=TrainingSettings(), example_input=example_input(splits), seed=0,
                       protected=protected)
    return arch, splits, ctx


def test_pruning_removes_whole_attention_heads() -> None:
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    arch, splits, ctx = _setting()
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

    arch, splits, ctx = _setting()
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


def test_a_global_step_that_removes_no_head_still_prunes() -> None:
    """torch-pruning 1.6.1 leaves its global head threshold unset on a step whose schedule removes
    no head (8 heads, a share of 0.1 over 4 steps: one head in step 1, none in step 2) and then
    reads it; a bert-tokens candidate failed with that UnboundLocalError."""
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    arch, splits, ctx = _setting()
    model = arch.build().eval()
    model = apply_stage(model, Stage.make("prune", importance="l2", ratio=0.1, steps=4, allocation="global", round_to=1,
                                          epochs=0), ctx)
    heads = [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer]
    assert sum(heads) == 7 and min(heads) >= 1  # int(8 x 0.9) kept: the heads step 1 removed, none after
    x, _ = splits.val.take(5)
    assert model(**x).logits.shape == (5, 4)


@pytest.mark.parametrize("importance", ["taylor", "lamp"])
def test_pruning_after_low_rank_keeps_attention_heads_whole(importance: str) -> None:
    """Low-rank folds q/k/v into Linear pairs; pruning after it must still cut whole heads (a
    bert-tokens candidate failed with "shape '[64, 32, -1, 32]' is invalid" before)."""
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    arch, splits, ctx = _setting()
    model = apply_stage(arch.build().eval(), Stage.make("lowrank", energy=0.8, reg_epochs=1, epochs=0), ctx)
    assert any(isinstance(layer.attention.self.query, torch.nn.Sequential) for layer in model.bert.encoder.layer)
    assert isinstance(model.bert.embeddings.word_embeddings, torch.nn.Sequential)  # a narrow table and its projection
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


def test_gpt2_conv1d_layers_become_the_linear_layers_they_compute() -> None:
    from evoforge.compression.stages import linear_layers

    arch, splits, _ = _setting("gpt2", protected=("score",))
    model = arch.build().eval()
    x, _ = splits.val.take(5)
    with torch.no_grad():
        expected = model(**x).logits
        converted = linear_layers(model)
        assert converted is model and type(model.transformer.h[0].attn.c_attn) is torch.nn.Linear
        assert model.transformer.h[0].mlp.c_fc.weight.shape == (128, 32)  # out x in, as nn.Linear stores it
        torch.testing.assert_close(model(**x).logits, expected)


def test_gpt2_pruning_keeps_its_fused_attention_whole_and_narrows_the_rest() -> None:
    """GPT-2 computes queries, keys and values in one projection (``c_attn``) that attention
    splits; torch-pruning cannot map the split to heads (an IndexError before), so those outputs
    stay, while the hidden size and the MLP are pruned. Tracing also needs the key/value cache
    off (its concatenation has no channel count), and the cache setting comes back."""
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    arch, splits, ctx = _setting("gpt2", protected=("score",))
    model = arch.build().eval()
    pruned = apply_stage(model, Stage.make("prune", importance="l2", ratio=0.3, steps=1, allocation="uniform", round_to=1,
                                           epochs=0), ctx)
    for block in pruned.transformer.h:
        assert block.attn.c_attn.out_features == 96  # 3 x 32: the q, k and v widths kept
        assert block.mlp.c_fc.out_features < 128 and block.attn.c_attn.in_features < 32
    assert pruned.config.use_cache is True
    x, _ = splits.val.take(5)
    assert pruned(**x).logits.shape == (5, 4)


def _tiny_shufflenet() -> torch.nn.Module:
    from torchvision.models.shufflenetv2 import ShuffleNetV2

    return ShuffleNetV2([4, 8, 4], [8, 16, 32, 64, 64], num_classes=4)  # deep enough to break torch-pruning's tracing


def _tiny_swin() -> torch.nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=[2, 2], num_classes=4)


@pytest.mark.parametrize("importance", ["l1", "taylor", "hessian"])
def test_shufflenet_is_pruned_block_by_block_inside_each_branch(importance: str) -> None:
    """torch-pruning cannot follow ShuffleNet's channel shuffle across the model (a
    ZeroDivisionError in its graph), so each block it can follow is pruned inside: a branch's
    inner channels go, every channel the shuffle regroups stays. With the gradient criteria too
    (a block's trial prune once skipped the groups without gradients and took a block whose
    depthwise convolution shares its input's channels)."""
    pytest.importorskip("torchvision.models")
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    _, splits, ctx = _setting("resnet18", protected=())  # colour images
    model = _tiny_shufflenet().eval()
    before = {name: m.out_channels for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    pruned = apply_stage(model, Stage.make("prune", importance=importance, ratio=0.5, steps=2, allocation="uniform", round_to=1,
                                           epochs=0), ctx)
    after = {name: m.out_channels for name, m in pruned.named_modules() if isinstance(m, torch.nn.Conv2d)}
    inner = [n for n in before if n.endswith("branch2.0") or n.endswith("branch2.3")]
    handed_on = [n for n in before if n not in inner]  # branch outputs, the stem, the last convolution
    assert inner and all(after[n] == before[n] // 2 for n in inner), (before, after)
    assert all(after[n] == before[n] for n in handed_on)
    x, _ = splits.val.take(3)
    assert pruned(torch.as_tensor(x)).shape == (3, 4)


def test_pruning_block_by_block_removes_the_channels_it_names() -> None:
    """In one ShuffleNet branch, half the inner channels are made dead (every weight that reads or
    writes them zero, their batch norms zeroed): pruning at ratio 0.5 must remove exactly those, and
    the branch must compute what it did (the other branches lose live channels; the model runs)."""
    pytest.importorskip("torchvision.models")
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    _, splits, ctx = _setting("resnet18", protected=())
    model = _tiny_shufflenet().eval()
    branch = model.stage2[1].branch2  # 1x1 conv, BN, ReLU, 3x3 depthwise, BN, 1x1 conv, BN, ReLU
    dead = torch.arange(0, branch[0].out_channels, 2)
    with torch.no_grad():
        for layer in (branch[0], branch[1], branch[3], branch[4]):
            layer.weight[dead] = 0
        for norm in (branch[1], branch[4]):
            norm.bias[dead] = 0
        branch[5].weight[:, dead] = 0
    z = torch.randn(3, branch[0].in_channels, 8, 8)
    with torch.no_grad():
        before = branch(z)
    stage = Stage.make("prune", importance="l1", ratio=0.5, steps=1, allocation="uniform", round_to=1, epochs=0)
    pruned = apply_stage(model, stage, ctx)
    assert pruned.stage2[1].branch2 is branch and branch[0].out_channels == len(dead)
    with torch.no_grad():
        torch.testing.assert_close(branch(z), before, rtol=1e-5, atol=1e-5)
    assert before.abs().max() > 0.1  # (a branch that computes something)
    x, _ = splits.val.take(3)
    assert pruned(torch.as_tensor(x)).shape == (3, 4)


def test_swin_is_pruned_block_by_block_in_its_mlps() -> None:
    """Swin's window partition sends torch-pruning's channel inference to its recursion limit, and
    its attention reads a parameter outside its layers: the MLPs are the blocks it can follow, and
    their hidden layers are pruned (the output of an MLP, a layer's own output, is kept)."""
    pytest.importorskip("torchvision.models")
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    _, splits, ctx = _setting("resnet18", protected=())
    pruned = apply_stage(_tiny_swin().eval(), Stage.make("prune", importance="l2", ratio=0.5, steps=1, allocation="global",
                                                         round_to=1, epochs=0), ctx)
    blocks = [pruned.features[1][0], pruned.features[3][0]]
    assert all(b.mlp[0].out_features < hidden for b, hidden in zip(blocks, (64, 128)))  # hidden sizes cut
    assert [b.mlp[3].out_features for b in blocks] == [16, 32]  # the MLPs hand on what they did
    assert [b.attn.qkv.out_features for b in blocks] == [48, 96]
    x, _ = splits.val.take(3)
    assert pruned(torch.as_tensor(x)).shape == (3, 4)


def test_a_model_with_no_block_to_prune_either_is_refused_with_the_cause(monkeypatch) -> None:
    pytest.importorskip("torchvision.models")
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage, prune
    from evoforge.errors import EvaluationError

    monkeypatch.setattr(prune, "block_pruners", lambda *args: [])
    _, _, ctx = _setting("resnet18", protected=())
    with pytest.raises(EvaluationError, match="torch-pruning cannot follow .*ZeroDivisionError.*nor has any block of it inner channels"):
        apply_stage(_tiny_shufflenet().eval(), Stage.make("prune", importance="l1", ratio=0.3, steps=1, allocation="uniform",
                                                          round_to=1, epochs=0), ctx)


def test_vit_prunes_through_its_class_token_concatenation() -> None:
    """ViT prepends a class token with a concatenation that torch-pruning only follows when the
    whole model is traced: the graph check before pruning must trace it as the pruner does
    (with the protected classifier), or it refuses a model that prunes."""
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    arch, splits, ctx = _setting("vit")
    pruned = apply_stage(arch.build().eval(), Stage.make("prune", importance="l1", ratio=0.5, steps=1, allocation="uniform",
                                                         round_to=1, epochs=0), ctx)
    assert {layer.attention.num_attention_heads for layer in pruned.vit.layers} == {2}  # of 4
    x, _ = splits.val.take(3)
    assert pruned(x).logits.shape == (3, 4)


def test_low_rank_leaves_layers_the_model_reads_directly() -> None:
    """Swin's attention calls ``F.linear(x, qkv.weight, ...)`` rather than the ``qkv`` module:
    replacing that layer broke the model ('SVDLayer' object has no attribute 'weight'). Only
    layers that run as modules are factorized; the MLPs still are."""
    pytest.importorskip("torchvision.models")
    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    _, splits, ctx = _setting("resnet18", protected=("head",))
    model = apply_stage(_tiny_swin().eval(), Stage.make("lowrank", energy=0.8, reg_epochs=1, epochs=0), ctx)
    block = model.features[1][0]
    assert isinstance(block.attn.qkv, torch.nn.Linear) and isinstance(block.mlp[0], torch.nn.Sequential)
    x, _ = splits.val.take(3)
    assert model(x).shape == (3, 4)
