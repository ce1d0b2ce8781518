"""Compile-flag tuning (evoforge.mlir.flag_tuning): the choice rule, which programs are tuned, and
a real tuning of a small convolutional program that keeps its outputs and is stored for resume."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.mlir import flag_tuning
from evoforge.mlir.flag_tuning import DEFAULT_SET, FlagSet, choose, has_convolution, load_tuning, tune_flags
from evoforge.registry import Registry


def test_a_set_replaces_the_default_only_when_clearly_faster():
    assert choose({DEFAULT_SET: [1.0, 1.1, 0.9], "fast": [0.5, 0.6, 0.4]}) == "fast"
    assert choose({DEFAULT_SET: [1.0, 1.0, 1.0], "slightly": [0.97, 0.97, 0.97]}) == DEFAULT_SET  # within 5%
    assert choose({DEFAULT_SET: [1.0], "slow": [2.0]}) == DEFAULT_SET
    assert choose({DEFAULT_SET: [1.0], "a": [0.8], "b": [0.6]}) == "b"


def test_a_burst_of_load_does_not_make_an_equal_set_look_faster():
    # The same speed throughout; a burst slows rounds 2-3 and round 4's default call: the medians
    # say 0.5, the rounds say 1.
    times = {DEFAULT_SET: [1.0, 1.0, 2.0, 2.0, 2.0], "same": [1.0, 1.0, 2.0, 2.0, 1.0]}
    assert flag_tuning.paired_ratios(times) == {DEFAULT_SET: 1.0, "same": 1.0}
    assert choose(times) == DEFAULT_SET


def test_a_tuning_stored_before_paired_ratios_compares_medians():
    stored = {"chosen": "im2col", "flags": ["--x"], "ms": {DEFAULT_SET: 30.0, "im2col": 10.0}, "rejected": {},
              "target": "llvm-cpu", "base_flags": []}
    assert flag_tuning.Tuning.from_dict(stored).speedup == pytest.approx(3.0)
    assert flag_tuning.Tuning.from_dict({**stored, "ratio_to_default": {DEFAULT_SET: 1.0, "im2col": 0.25}}).speedup == 4.0


def test_convolutions_are_recognised_at_torch_and_linalg_level(linalg_mlp_text, tiny_torch):
    assert has_convolution("%3 = torch.aten.convolution %arg0, %0, %1, %2 : !torch.vtensor<[1,1,8,8],f32>")
    assert has_convolution("%4 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>}")
    assert has_convolution("%5 = linalg.depthwise_conv_2d_nchw_chw {strides = dense<1> : tensor<2xi64>}")
    assert not has_convolution(linalg_mlp_text)
    assert not has_convolution(tiny_torch[2].text)


def _never_compile(*args, **kwargs):
    raise AssertionError("nothing should be compiled")


def test_a_program_no_set_applies_to_keeps_the_default_without_compiling(linalg_program, tmp_path, monkeypatch):
    monkeypatch.setattr("evoforge.mlir.iree_runner.compile_program", _never_compile)
    tuning = tune_flags(linalg_program, tmp_path, target="llvm-cpu", extra_flags=[], driver="local-sync")
    assert (tuning.chosen, tuning.flags, tuning.ms) == (DEFAULT_SET, (), {})
    assert load_tuning(tmp_path) == tuning


def test_only_llvm_cpu_is_tuned(tmp_path, monkeypatch):
    monkeypatch.setattr("evoforge.mlir.iree_runner.compile_program", _never_compile)
    program = type("P", (), {"text": "%0 = torch.aten.convolution %a, %b"})()
    assert tune_flags(program, tmp_path, target="cuda", extra_flags=[], driver="cuda").chosen == DEFAULT_SET


@pytest.fixture(scope="module")
def conv_program():
    torch = pytest.importorskip("torch")
    pytest.importorskip("iree.turbine")
    from evoforge.mlir.program import from_torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 3, padding=1),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    return from_torch(model, torch.randn(2, 3, 12, 12), level="torch")


def test_tuning_a_conv_program_keeps_its_outputs_and_is_stored(conv_program, tmp_path, monkeypatch):
    pytest.importorskip("iree.runtime")
    sets: Registry[FlagSet] = Registry("compile flag set")
    sets.add("im2col", flag_tuning.FLAG_SETS["im2col"])
    sets.add("broken", FlagSet(("--iree-no-such-flag",), has_convolution))
    tuning = tune_flags(conv_program, tmp_path, target="llvm-cpu", extra_flags=[], driver="local-sync", sets=sets, repeats=3)
    assert set(tuning.ms) == {DEFAULT_SET, "im2col"} and all(ms > 0 for ms in tuning.ms.values())
    assert list(tuning.rejected) == ["broken"] and "compile" in tuning.rejected["broken"]
    assert set(tuning.ratio_to_default) == {DEFAULT_SET, "im2col"} and tuning.ratio_to_default[DEFAULT_SET] == 1.0
    assert tuning.speedup == pytest.approx(1 / tuning.ratio_to_default[tuning.chosen])
    assert tuning.chosen in tuning.ms and tuning.flags == ({"im2col": sets["im2col"].flags}.get(tuning.chosen, ()))
    monkeypatch.setattr("evoforge.mlir.iree_runner.compile_program", _never_compile)
    assert tune_flags(conv_program, tmp_path, target="llvm-cpu", extra_flags=[], driver="local-sync") == tuning  # read back
    monkeypatch.undo()
    other = tune_flags(conv_program, tmp_path, target="llvm-cpu", extra_flags=["--iree-opt-level=O1"], driver="local-sync",
                       sets=sets, repeats=3)  # other flags underneath: tuned again
    assert other.base_flags == ("--iree-opt-level=O1",) and load_tuning(tmp_path) == other


def test_outputs_are_compared_up_to_float_rounding():
    x = np.array([[1.0, -2.0], [3.0, 100.0]], dtype=np.float32)
    assert flag_tuning._same_outputs([x], [x + 1e-5])
    assert not flag_tuning._same_outputs([x], [x + np.float32(1.0)])
    assert not flag_tuning._same_outputs([x], [x[:1]])
    assert not flag_tuning._same_outputs([np.array([1, 2])], [np.array([1, 3])])
