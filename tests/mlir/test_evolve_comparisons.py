"""The source model timed in the runtimes a user would try instead of evolving its program."""

from __future__ import annotations

import json
from importlib.util import find_spec

import pytest

pytestmark = pytest.mark.iree
torch = pytest.importorskip("torch")


def test_every_contender_is_timed_against_the_original_program(tmp_path) -> None:
    import evoforge
    from evoforge.api import open_store
    from evoforge.mlir.comparisons import versus
    from evoforge.mlir.edits import EditListGenome
    from evoforge.report import run_summary

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    run_dir = tmp_path / "run"
    evoforge.evolve(model, example_input=torch.randn(8, 16), budget=2, pop_size=2, workers=0, run_dir=run_dir)
    compared = json.loads((run_dir / "program" / "comparisons.json").read_text())
    contenders = {"torch_eager", "torch_compile", "onnxruntime", "iree_o3"} | ({"openvino"} if find_spec("openvino") else set())
    assert set(compared["ms"]) == {"iree", *contenders}, compared["errors"]
    assert set(compared["skipped"]) == {"openvino"} - contenders
    assert all(ms > 0 for ms in compared["ms"].values()) and compared["batch"] == 8 and compared["threads"] == 1
    with open_store(run_dir, readonly=True) as store:
        original = store.evaluations()[EditListGenome().content_hash]
    assert original.metrics == pytest.approx({**original.metrics, **versus(original.objectives["runtime_ratio"], compared)})
    assert set(compared["ratio_to_iree"]) == contenders
    assert original.metrics["vs_torch_eager"] == pytest.approx(
        original.objectives["runtime_ratio"] / compared["ratio_to_iree"]["torch_eager"])
    headline = run_summary(run_dir)["headline"]
    assert "torch.compile" in headline and "OpenVINO" in headline and "IREE -O3" in headline  # timed, or not installed


def test_fast_leaves_torch_compile_out_and_says_so(tmp_path) -> None:
    import evoforge
    from evoforge.report import run_summary

    model = torch.nn.Sequential(torch.nn.Linear(16, 4)).eval()
    run_dir = tmp_path / "run"
    evoforge.evolve(model, example_input=torch.randn(8, 16), budget=2, pop_size=2, workers=0, run_dir=run_dir,
                    compare_runtimes="fast", tune_flags=False)
    compared = json.loads((run_dir / "program" / "comparisons.json").read_text())
    assert "torch_compile" not in compared["ms"] and {"torch_eager", "onnxruntime", "iree_o3"} <= set(compared["ms"])
    assert "compare_runtimes='all' times it" in compared["skipped"]["torch_compile"]
    assert "torch.compile not timed: it compiles native code" in run_summary(run_dir)["headline"]


def test_an_unknown_compare_runtimes_value_is_refused_before_anything_is_written(tmp_path) -> None:
    import evoforge
    from evoforge.errors import ConfigError

    with pytest.raises(ConfigError, match="compare_runtimes 'quick' is not one of: fast, all, none"):
        evoforge.evolve(torch.nn.Linear(16, 4), example_input=torch.randn(8, 16), budget=2, run_dir=tmp_path / "run",
                        compare_runtimes="quick")
    assert not (tmp_path / "run").exists()


def test_a_variant_is_compared_through_the_paired_ratio_and_old_records_through_medians() -> None:
    from evoforge.mlir.comparisons import versus

    paired = {"ms": {"iree": 10.0, "torch_eager": 5.0}, "ratio_to_iree": {"torch_eager": 0.4}}
    assert versus(0.8, paired) == pytest.approx({"vs_torch_eager": 2.0})  # 0.8 of the original, which takes 1/0.4 of eager
    stored_before = {"ms": {"iree": 10.0, "torch_eager": 5.0, "onnxruntime": 4.0}}
    assert versus(0.8, stored_before) == pytest.approx({"vs_torch_eager": 1.6, "vs_onnxruntime": 2.0})


def test_evolving_without_comparisons_records_none(tmp_path) -> None:
    import evoforge

    model = torch.nn.Sequential(torch.nn.Linear(16, 4)).eval()
    evoforge.evolve(model, example_input=torch.randn(8, 16), budget=2, pop_size=2, workers=0, run_dir=tmp_path / "run",
                    compare_runtimes="none")
    assert not (tmp_path / "run" / "program" / "comparisons.json").exists()


def test_show_warns_when_another_runtime_runs_the_original_much_faster() -> None:
    from evoforge.mlir.comparisons import iree_behind

    resnet = {"ms": {"iree": 56.2, "torch_eager": 29.6, "torch_compile": 19.7, "onnxruntime": 17.9, "iree_o3": 56.1},
              "ratio_to_iree": {"torch_eager": 0.53, "torch_compile": 0.35, "onnxruntime": 0.32, "iree_o3": 1.0}}
    said = iree_behind(resnet)
    assert said is not None and said.startswith("IREE runs the original program 3.12x slower than ONNX Runtime does")
    assert "(vs_onnxruntime < 1)" in said
    bert = {"ms": {"iree": 22.6, "torch_compile": 15.7, "onnxruntime": 23.2},
            "ratio_to_iree": {"torch_compile": 0.9, "onnxruntime": 1.03}}  # within SLOWER_BY of every runtime
    assert iree_behind(bert) is None
    assert iree_behind({"ms": {"iree": 10.0, "iree_o3": 5.0}}) is None  # IREE -O3 is IREE: the run's flags are its choice
    assert "torch eager" in iree_behind({"ms": {"iree": 10.0, "torch_eager": 5.0}})  # records without paired ratios
