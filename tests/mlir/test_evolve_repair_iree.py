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
