"""Shape repair numerics and every operator end to end: edit, verify, compile, run."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.mlir.edits import EDIT_KINDS, TORCH_ONLY_KINDS, Resize
from evoforge.mlir.iree_runner import compile_program, evaluate_variant, run_program
from evoforge.mlir.mutate import random_edit

pytestmark = pytest.mark.iree

# (name, source shape, target shape, pad fill)
CASES = [
    ("pad_one", (4, 10), (4, 14), 1),
    ("slice_then_pad", (3, 7), (6, 2), 0),
    ("broadcast", (8,), (2, 8), 0),
    ("collapse", (2, 3, 8), (5,), 0),
    ("pad_broadcast", (5,), (3, 7), 1),
]


def _expected(name, a):
    if name == "pad_one":
        out = np.ones((4, 14), np.float32)
        out[:, 2:12] = a
        return out
    if name == "slice_then_pad":
        out = np.zeros((6, 2), np.float32)
        out[1:4] = a[:, 2:4]
        return out
    if name == "broadcast":
        return np.stack([a, a])
    if name == "collapse":
        return a[0, 1, 1:6]
    row = np.ones(7, np.float32)
    row[1:6] = a
    return np.stack([row] * 3)


def _repair_module():
    from iree.compiler import ir

    from evoforge.mlir import irtools

    def t(shape):
        return f"tensor<{'x'.join(map(str, shape))}xf32>"

    text = "\n".join(f"func.func @{n}(%a: {t(s)}, %b: {t(d)}) -> {t(d)} {{ return %b : {t(d)} }}" for n, s, d, _ in CASES)
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(text)
        for (_name, _, _, fill), fn in zip(CASES, module.body.operations):
            block = fn.regions[0].blocks[0]
            ret = block.operations[0].operation
            ret.operands[0] = irtools.repair_to(block.arguments[0], block.arguments[1].type, fill, ir.InsertionPoint(ret))
        module.operation.verify()
        return str(module)


def test_shape_repair_numerics(worker):
    vmfb = compile_program(_repair_module(), input_type="none")
    rng = np.random.default_rng(0)
    for name, src, dst, _ in CASES:
        a = rng.standard_normal(src).astype(np.float32)
        out = run_program(vmfb, [[a, np.zeros(dst, np.float32)]], worker=worker, function=name)[0][0]
        np.testing.assert_array_equal(out, _expected(name, a), err_msg=name)


def test_resize_drops_the_outer_entries(linalg_program, worker):
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    masked = np.zeros_like(x)
    masked[:, 2:4] = x[:, 2:4]
    base = evaluate_variant(linalg_program, [], [[x], [masked]], worker=worker)
    resized = evaluate_variant(linalg_program, [Resize(value="arg0", dim=1, size=2, fill=0)], [[x]], worker=worker)
    assert base.ok and resized.ok
    np.testing.assert_allclose(resized.outputs[0][0], base.outputs[1][0], rtol=1e-6)
    assert not np.allclose(base.outputs[0][0], base.outputs[1][0])


@pytest.mark.parametrize("which", ["linalg", "torch"])
def test_every_operator_compiles_and_runs(which, linalg_program, tiny_torch, worker):
    program = linalg_program if which == "linalg" else tiny_torch[2]
    x = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    base = evaluate_variant(program, [], [[x]], worker=worker)
    assert base.ok
    if which == "torch":
        np.testing.assert_allclose(base.outputs[0][0], tiny_torch[0](tiny_torch[1].new_tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(3)
    changed = 0
    for kind in EDIT_KINDS:
        if which == "linalg" and kind in TORCH_ONLY_KINDS:
            continue
        edit = random_edit(program, rng, kind)
        result = evaluate_variant(program, [edit], [[x]], worker=worker, baseline_vmfb=base.vmfb, repeats=3)
        assert result.ok, (kind, edit, result.failure)
        assert result.outputs[0][0].shape == base.outputs[0][0].shape
        assert result.runtime is not None and result.runtime.ratio > 0
        changed += not np.array_equal(result.outputs[0][0], base.outputs[0][0])
    assert changed >= 1


def test_a_stale_edit_is_an_edit_failure(linalg_program, worker):
    result = evaluate_variant(linalg_program, [Resize(value="U99#0", dim=0, size=1)], [[np.zeros((4, 6), np.float32)]], worker=worker)
    assert not result.ok and result.failure.kind == "edit" and "U99" in result.failure.message


@pytest.fixture(scope="module")
def two_convs():
    """(module, torch-level Program) of conv(stride 1) -> relu -> conv(stride 2): each conv's
    strides, padding and dilation are constant ops defined right before it."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("iree.turbine")
    from evoforge.mlir.program import from_torch

    class TwoConvs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv2d(4, 4, 3, padding=1)
            self.b = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    model = TwoConvs().eval()
    return model, from_torch(model, torch.randn(2, 4, 8, 8), level="torch")


def _uids(program, needle):
    return [line.split('evoforge.uid = "')[1].split('"')[0] for line in program.text.splitlines() if needle in line]


def test_a_copied_op_recomputes_its_static_parameters(two_convs, worker):
    """The second conv (stride 2) copied before the relu, reading the first conv's output and
    weights: its strides, padding and dilation are defined after that place, so the copy
    recomputes them, and the program gives exactly that stride-2 conv of the first's output."""
    import torch

    from evoforge.mlir.edits import Copy, Source

    model, program = two_convs
    conv_a, relu, conv_b = _uids(program, "torch.aten.")
    weight_a, bias_a = _uids(program, "torch.vtensor.literal")[:2]
    (ret,) = _uids(program, "return")
    copy = Copy(uid=conv_b, before=relu, new_uid=f"{conv_b}.c1",
                operands=(Source(f"{conv_a}#0"), Source(f"{weight_a}#0"), Source(f"{bias_a}#0"), Source(""), Source(""),
                          Source(""), Source("")),
                rewire_user=ret, rewire_operand=0)
    x = np.random.default_rng(4).standard_normal((2, 4, 8, 8)).astype(np.float32)
    result = evaluate_variant(program, [copy], [[x]], worker=worker)
    assert result.ok, result.failure
    with torch.no_grad():
        h = model.a(torch.from_numpy(x))
        expected = torch.nn.functional.conv2d(h, model.a.weight, model.a.bias, stride=2, padding=1).numpy()
    np.testing.assert_allclose(result.outputs[0][0], expected, rtol=1e-5, atol=1e-5)


def test_random_copies_of_a_convolution_program_compile_and_run(two_convs, worker):
    """A copy never hands a conv another op's strides or padding (its result type would no
    longer match, and IREE refuses the program)."""
    program = two_convs[1]
    x = np.random.default_rng(5).standard_normal((2, 4, 8, 8)).astype(np.float32)
    base = evaluate_variant(program, [], [[x]], worker=worker)
    rng = np.random.default_rng(7)  # the draw before the fix made IREE refuse 2 of these 8
    for _ in range(8):
        edit = random_edit(program, rng, "copy")
        result = evaluate_variant(program, [edit], [[x]], worker=worker, baseline_vmfb=base.vmfb)
        assert result.ok, (edit, result.failure)
