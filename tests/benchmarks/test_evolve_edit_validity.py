"""The edit-validity benchmark (benchmarks/evolve_edit_validity.py) counts what the search's own
draws and evaluations give on a conformance architecture, and refuses unknown architectures."""

import sys

import pytest

from tests.benchmarks import benchmark_module

pytestmark = pytest.mark.iree
pytest.importorskip("iree.turbine")



@pytest.fixture(scope="module")
def validity():
    return benchmark_module("evolve_edit_validity")


def test_counts_every_draw_of_every_kind_once(validity, tmp_path):
    from evoforge.mlir.edits import EDIT_KINDS

    result = validity.measure(tmp_path, "dict_mlp", draws=2, seed=0)
    assert result["exporter"] == "iree-turbine" and set(result["kinds"]) == set(EDIT_KINDS)
    for kind in result["kinds"].values():
        assert sum(kind["outcomes"].values()) == 2
    assert result["draws"] == 2 * len(EDIT_KINDS)
    assert 0 < result["ok"] == sum(k["outcomes"].get("ok", 0) for k in result["kinds"].values())
    assert all(k["compile_s"] > 0 for k in result["kinds"].values() if k["outcomes"].get("ok"))


def test_unknown_architecture_is_refused_with_the_valid_names(validity, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["evolve_edit_validity.py", str(tmp_path), "--architectures", "resnet18,lenet"])
    with pytest.raises(SystemExit, match=r"unknown \['lenet'\]; valid: resnet18, "):
        validity.main()
