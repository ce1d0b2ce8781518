"""Type-changing resize: the smaller type is carried through the consumers, and the compiled
variant computes exactly what the correspondingly pruned PyTorch model computes."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.genome import genome_from_json
from evoforge.mlir.edits import EditError, EditListGenome, Resize, edit_to_data
from evoforge.mlir.iree_runner import evaluate_variant
from evoforge.mlir.mutate import Session, apply_edits

pytestmark = pytest.mark.iree

torch = pytest.importorskip("torch")
pytest.importorskip("iree.turbine")


class SmallCNN(torch.nn.Module):
    """stem conv-BN-ReLU (8 ch), depthwise conv-BN-ReLU, pointwise conv-BN-ReLU (12 ch), pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(8, 12, 1), nn.BatchNorm2d(12), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 3))

    def forward(self, x):
        return self.head(self.pw(self.dw(self.stem(x))))


@pytest.fixture(scope="module")
def cnn():
    from evoforge.mlir.program import from_torch

    torch.manual_seed(0)
    model = SmallCNN()
    for bn in (model.stem[1], model.dw[1], model.pw[1]):  # non-trivial BN statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(4, 1, 8, 8)
    return model, x, from_torch(model, x, level="torch")


def _uid_of_weight(program, layer_out_channels: str) -> str:
    """The value name of the conv weight literal of the given type text, e.g. "[8,1,3,3]"."""
    from evoforge.mlir import irtools

    with Session(program) as s:
        for op in irtools.walk(s.fn):
            if op.name == "torch.aten.conv2d" and f"<{layer_out_channels}," in str(op.operands[1].type):
                return irtools.value_name(op.operands[1], s.fn)
    raise AssertionError(f"no conv weight {layer_out_channels}")


def _masked(model, x, module, keep: slice):
    """model(x) with the channels of ``module``'s output outside ``keep`` set to zero."""
    def hook(_m, _i, out):
        mask = torch.zeros_like(out)
        mask[:, keep] = 1
        return out * mask

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(x).numpy()
    finally:
        handle.remove()


def _run(program, edits, x, worker):
    result = evaluate_variant(program, edits, [[x]], worker=worker)
    assert result.ok, result.failure
    return result.outputs[0][0]


def _report(program, edit):
    with Session(program) as s:
        s.apply(edit)
        s.verify()
        return s.last_narrowing


def test_pruning_stem_channels_flows_through_depthwise_into_pointwise(cnn, worker):
    model, x, program = cnn
    edit = Resize(value=_uid_of_weight(program, "[8,1,3,3]"), dim=0, size=4, propagate=True)
    report = _report(program, edit)
    assert report is not None and report.padded_back == 0
    assert report.absorbed.count("torch.aten.conv2d") == 3  # stem, depthwise (groups follow), pointwise
    text = apply_edits(program, [edit])
    assert "!torch.vtensor<[4,4,8,8],f32>" in text and "[4,8,8,8]" not in text.split("torch.aten.conv2d", 3)[-1]
    out = _run(program, [edit], x.numpy(), worker)
    np.testing.assert_allclose(out, _masked(model, x, model.dw, slice(2, 6)), rtol=1e-4, atol=1e-5)


def test_pruning_pointwise_outputs_flows_through_pool_and_flatten_into_the_classifier(cnn, worker):
    model, x, program = cnn
    edit = Resize(value=_uid_of_weight(program, "[12,8,1,1]"), dim=0, size=8, fill=0, propagate=True)
    report = _report(program, edit)
    assert report.padded_back == 0
    assert {"torch.aten.adaptive_avg_pool2d", "torch.aten.view", "torch.aten.linear"} <= set(report.absorbed)
    out = _run(program, [edit], x.numpy(), worker)
    np.testing.assert_allclose(out, _masked(model, x, model.pw, slice(2, 10)), rtol=1e-4, atol=1e-5)


def test_cropping_the_input_shrinks_every_feature_map(cnn, worker):
    model, x, program = cnn
    edits = [Resize(value="arg0", dim=2, size=6, propagate=True), Resize(value="arg0", dim=3, size=6, propagate=True)]
    assert "[4,12,6,6]" in apply_edits(program, edits)
    with torch.no_grad():
        expected = model(x[:, :, 1:7, 1:7]).numpy()
    np.testing.assert_allclose(_run(program, edits, x.numpy(), worker), expected, rtol=1e-4, atol=1e-5)


def test_fewer_rows_reach_the_return_and_are_padded_back_there(cnn, worker):
    model, x, program = cnn
    edit = Resize(value="arg0", dim=0, size=2, fill=1, propagate=True)
    assert _report(program, edit).padded_back == 1  # only the return needs the old type
    out = _run(program, [edit], x.numpy(), worker)
    with torch.no_grad():
        expected = model(x[1:3]).numpy()
    np.testing.assert_allclose(out[1:3], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out[[0, 3]], np.ones((2, 3), np.float32))


def test_propagating_resize_replays_and_keeps_old_edit_keys(cnn):
    _, _, program = cnn
    edit = Resize(value=_uid_of_weight(program, "[12,8,1,1]"), dim=0, size=6, propagate=True)
    assert apply_edits(program, [edit]) == apply_edits(program, [edit])
    assert edit_to_data(edit)["propagate"] is True
    assert "propagate" not in edit_to_data(Resize(value="arg0", dim=0, size=1))  # hashes of older runs stay valid
    back = genome_from_json(EditListGenome(edits=(edit,)).to_json())
    assert back.edits == (edit,)


def test_propagating_resize_needs_a_torch_program(linalg_program):
    with pytest.raises(EditError, match="needs a torch tensor"):
        apply_edits(linalg_program, [Resize(value="arg0", dim=1, size=3, propagate=True)])


def test_explanation_names_the_ops_that_shrank(cnn):
    from evoforge.mlir.describe import describe_edits

    _, _, program = cnn
    edit = Resize(value=_uid_of_weight(program, "[12,8,1,1]"), dim=0, size=8, propagate=True)
    (line,) = describe_edits(program, [edit])
    assert "carry the smaller shape" in line and "conv2d" in line and "adaptive_avg_pool2d" in line
    assert "view" in line and "0 uses read it padded back" in line


@pytest.mark.parametrize("which", ["torch", "linalg"])
def test_random_resizes_change_types_only_at_torch_level(which, cnn, linalg_program):
    from evoforge.mlir.mutate import random_edit

    program = cnn[2] if which == "torch" else linalg_program
    rng = np.random.default_rng(0)
    edits = [random_edit(program, rng, "resize") for _ in range(12)]
    propagating = [e for e in edits if e.propagate]
    assert bool(propagating) == (which == "torch")
    for e in propagating:
        assert apply_edits(program, [e]) == apply_edits(program, [e])


def test_resize_fill_never_changes_a_type(cnn):
    from evoforge.mlir.edits import check_edit_kinds
    from evoforge.mlir.mutate import random_edit

    program, rng = cnn[2], np.random.default_rng(0)
    edits = [random_edit(program, rng, "resize_fill") for _ in range(12)]
    assert all(isinstance(e, Resize) and not e.propagate and not e.keep for e in edits)
    assert check_edit_kinds(["delete", "resize_fill"]) == ["delete", "resize_fill"]


def test_pruning_hidden_units_of_an_mlp(tiny_torch, worker):
    model, x, program = tiny_torch
    from evoforge.mlir import irtools

    with Session(program) as s:
        first = next(op for op in irtools.walk(s.fn) if op.name == "torch.aten.linear")
        weight = irtools.value_name(first.operands[1], s.fn)
    edit = Resize(value=weight, dim=0, size=3, propagate=True)
    assert _report(program, edit).absorbed.count("torch.aten.linear") == 2
    out = _run(program, [edit], x.numpy(), worker)
    with torch.no_grad():
        hidden = torch.relu(model.a(x))
        hidden[:, [0, 4]] = 0  # the centered 3 of 5 hidden units survive
        expected = model.b(hidden).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_narrowing_a_linear_layers_bias_prunes_its_outputs_like_its_weight(tiny_torch, worker):
    """The bias is the layer's output rows too: its weight's rows follow. The rule once treated it
    as the weight, so the program claimed fewer outputs than it computed and IREE refused it
    ('tensor.cast' op ... cast incompatible; DistilBERT and ViT in the edit-validity benchmark)."""
    model, x, program = tiny_torch
    from evoforge.mlir import irtools

    with Session(program) as s:
        first = next(op for op in irtools.walk(s.fn) if op.name == "torch.aten.linear")
        weight, bias = (irtools.value_name(first.operands[i], s.fn) for i in (1, 2))
    by_bias = Resize(value=bias, dim=0, size=3, propagate=True)
    report = _report(program, by_bias)
    assert report.padded_back == 0 and report.absorbed.count("torch.aten.linear") == 2
    out = _run(program, [by_bias], x.numpy(), worker)
    np.testing.assert_allclose(out, _run(program, [Resize(value=weight, dim=0, size=3, propagate=True)], x.numpy(), worker),
                               rtol=1e-5, atol=1e-6)


def test_only_values_with_a_consumer_that_can_shrink_are_carried(tiny_torch, linalg_program):
    from evoforge.mlir import irtools
    from evoforge.mlir.narrow import can_carry

    with Session(tiny_torch[2]) as s:
        ops = [op for op in irtools.walk(s.fn) if op.name == "torch.aten.linear"]
        assert can_carry(s.fn.regions[0].blocks[0].arguments[0])
        assert not can_carry(ops[-1].results[0])  # read only by the return
    with Session(linalg_program) as s:
        assert not can_carry(s.fn.regions[0].blocks[0].arguments[0])  # not a torch value


def test_importance_narrowing_keeps_the_largest_channels_like_the_pruned_model(cnn, worker):
    from evoforge.mlir import irtools
    from evoforge.mlir.mutate import largest_norm_rows

    model, x, program = cnn
    weight = model.stem[0].weight.detach().numpy()
    keep = largest_norm_rows(weight, 4)
    norms = np.linalg.norm(weight.reshape(8, -1), axis=1)
    assert sorted(keep) == list(keep) and min(norms[list(keep)]) >= max(np.delete(norms, list(keep)))
    name = _uid_of_weight(program, "[8,1,3,3]")
    with Session(program) as s:  # the weight read back from the program is the model's
        np.testing.assert_array_equal(s.constant(irtools.resolve(name, s.fn, s.index()).owner.operation), weight)
    edit = Resize(value=name, dim=0, size=4, propagate=True, keep=keep)
    report = _report(program, edit)
    assert report is not None and report.padded_back == 0 and report.absorbed.count("torch.aten.conv2d") == 3
    text = apply_edits(program, [edit])
    assert apply_edits(program, genome_from_json(EditListGenome(edits=(edit,)).to_json()).edits) == text
    assert "torch.aten.index_select" in text
    out = _run(program, [edit], x.numpy(), worker)
    np.testing.assert_allclose(out, _masked(model, x, model.dw, list(keep)), rtol=1e-4, atol=1e-5)
    centered = _run(program, [Resize(value=name, dim=0, size=4, propagate=True)], x.numpy(), worker)
    assert not np.allclose(out, centered)  # other channels than the centered cut


def test_kept_indices_are_checked_and_drawn_by_their_own_operator(cnn, tiny_torch):
    from evoforge.mlir.mutate import random_edit

    _, _, program = cnn
    name = _uid_of_weight(program, "[8,1,3,3]")
    with pytest.raises(EditError, match="keep must hold 4 ascending indices below 8"):
        apply_edits(program, [Resize(value=name, dim=0, size=4, propagate=True, keep=(3, 1, 2, 0))])
    with pytest.raises(EditError, match="need a type-changing resize"):
        apply_edits(program, [Resize(value=name, dim=0, size=4, keep=(0, 1, 2, 3))])
    rng = np.random.default_rng(5)
    for target in (program, tiny_torch[2]):
        edit = random_edit(target, rng, "resize_importance")
        assert edit.propagate and len(edit.keep) == edit.size and edit.dim == 0
        assert apply_edits(target, [edit]) == apply_edits(target, [edit])


class WideHead(torch.nn.Module):
    """A stem and a 1x1 convolution to 160 channels: its weight has more than 1024 entries, so
    iree-turbine stores it as a global (``util.global`` loaded and converted), as it stores every
    sizeable weight of a real model, where the stem's stays an inline literal."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.wide = nn.Sequential(nn.Conv2d(8, 160, 1), nn.BatchNorm2d(160), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(160, 3))

    def forward(self, x):
        return self.head(self.wide(self.stem(x)))


def test_importance_narrowing_reads_and_cuts_weights_stored_as_globals(worker):
    from evoforge.mlir import irtools
    from evoforge.mlir.mutate import largest_norm_rows, random_edit
    from evoforge.mlir.program import from_torch

    torch.manual_seed(0)
    model = WideHead().eval()
    x = torch.randn(4, 1, 8, 8)
    program = from_torch(model, x, level="torch")
    weight = model.wide[0].weight.detach().numpy()
    name = _uid_of_weight(program, "[160,8,1,1]")
    with Session(program) as s:
        op = irtools.resolve(name, s.fn, s.index()).owner.operation
        assert op.name == "torch_c.from_builtin_tensor"  # a global's load, converted
        np.testing.assert_array_equal(s.constant(op), weight)
    keep = largest_norm_rows(weight, 64)
    out = _run(program, [Resize(value=name, dim=0, size=64, propagate=True, keep=keep)], x.numpy(), worker)
    np.testing.assert_allclose(out, _masked(model, x, model.wide, list(keep)), rtol=1e-4, atol=1e-5)
    rng = np.random.default_rng(0)
    drawn = {random_edit(program, rng, "resize_importance").value for _ in range(8)}
    assert name in drawn  # the operator draws it (before, it saw literals only: here the stem's weight)


def test_resource_blobs_read_names_with_a_dollar():
    """iree-turbine names a second global of the same shape ``...float32$1``; its blob was not
    found, so importance narrowing could not read it (half of a BERT's feed-forward weights)."""
    from evoforge.mlir.irtools import resource_blobs

    text = ('module {}\n{-#\n  dialect_resources: {\n    builtin: {\n      __auto.w_torch.float32: "0x0400000000000040",\n'
            '      __auto.w_torch.float32$1: "0x040000000000803F"\n    }\n  }\n#-}\n')
    assert resource_blobs(text) == {"__auto.w_torch.float32": bytes.fromhex("00000040"),
                                    "__auto.w_torch.float32$1": bytes.fromhex("0000803F")}


def test_importance_draws_only_weights_whose_consumers_carry_the_kept_indices():
    """On a BERT most weights feed a view into attention heads or a layer norm, which cannot carry
    kept indices; drawing them wasted a parse and a failed narrowing per draw.
    `carries_kept` predicts each weight's outcome, and the operator draws only those that apply."""
    transformers = pytest.importorskip("transformers")
    from evoforge.mlir import irtools
    from evoforge.mlir.mutate import WEIGHT_OPS, _draw_resize_importance, largest_norm_rows
    from evoforge.mlir.narrow import can_carry, carries_kept
    from evoforge.mlir.program import from_torch

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, ids, mask):
            return self.model(input_ids=ids, attention_mask=mask).logits

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=16, num_labels=4)
    model = Logits(transformers.BertForSequenceClassification(config)).eval()
    ids = torch.randint(1, 100, (2, 8))
    program = from_torch(model, (ids, torch.ones_like(ids)), level="torch")
    predicted: dict[str, bool] = {}
    with Session(program) as s:
        for op in irtools.walk(s.fn):
            v = op.results[0] if op.name in WEIGHT_OPS else None
            if v is not None and len(irtools.tensor_info(v.type).shape) >= 2 and can_carry(v):
                predicted[irtools.value_name(v, s.fn)] = carries_kept(v, 0)
    assert set(predicted.values()) == {True, False}
    for name, carried in predicted.items():
        with Session(program) as s:
            weight = s.constant(irtools.resolve(name, s.fn, s.index()).owner.operation)
        half = weight.shape[0] // 2
        edit = Resize(value=name, dim=0, size=half, propagate=True, keep=largest_norm_rows(weight, half))
        try:
            apply_edits(program, [edit])
            applied = True
        except EditError:
            applied = False
        assert applied == carried, name
    rng = np.random.default_rng(0)
    for _ in range(6):
        with Session(program) as s:
            edit = _draw_resize_importance(s, rng)
            assert edit is not None and predicted[edit.value]
            s.apply(edit)
            s.verify()
