"""The source model timed in the runtimes a user would try instead of evolving its program."""

from __future__ import annotations

import json

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
    assert set(compared["ms"]) == {"iree", "torch_eager", "torch_compile", "onnxruntime", "iree_o3"}, compared["errors"]
    assert all(ms > 0 for ms in compared["ms"].values()) and compared["batch"] == 8 and compared["threads"] == 1
    with open_store(run_dir, readonly=True) as store:
        original = store.evaluations()[EditListGenome().content_hash]
    assert original.metrics == pytest.approx({**original.metrics, **versus(original.objectives["runtime_ratio"], compared)})
    assert original.metrics["vs_torch_eager"] == pytest.approx(
        original.objectives["runtime_ratio"] * compared["ms"]["iree"] / compared["ms"]["torch_eager"])
    assert "torch.compile" in run_summary(run_dir)["headline"] and "IREE -O3" in run_summary(run_dir)["headline"]


def test_evolving_without_comparisons_records_none(tmp_path) -> None:
    import evoforge

    model = torch.nn.Sequential(torch.nn.Linear(16, 4)).eval()
    evoforge.evolve(model, example_input=torch.randn(8, 16), budget=2, pop_size=2, workers=0, run_dir=tmp_path / "run",
                    compare_runtimes=False)
    assert not (tmp_path / "run" / "program" / "comparisons.json").exists()
