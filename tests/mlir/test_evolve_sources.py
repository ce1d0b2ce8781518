"""Programs from files other tools wrote: ONNX with dynamic dimensions, pinned to the data."""

from __future__ import annotations

import json

import numpy as np
import pytest

import evoforge
from evoforge.errors import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


class TokenBag(torch.nn.Module):
    """Token ids (batch, sequence) -> class scores: embedding, mean over the sequence, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, ids):  # type: ignore[no-untyped-def]
        return self.head(self.embed(ids).mean(dim=1))


def _dynamic_onnx(path) -> None:  # type: ignore[no-untyped-def]
    import warnings

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TokenBag().eval(), (torch.zeros(2, 5, dtype=torch.int64),), str(path), dynamo=False,
                          input_names=["ids"], output_names=["scores"], dynamic_axes={"ids": {0: "batch", 1: "sequence"}})


def test_dynamic_batch_and_sequence_are_pinned_to_the_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _dynamic_onnx(tmp_path / "bag.onnx")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (24, 12)).astype(np.int64)
    np.savez(tmp_path / "data.npz", x_val=ids, y_val=ids[:, 0] % 3)
    front = evoforge.evolve(tmp_path / "bag.onnx", str(tmp_path / "data.npz"), batch_size=8, budget=4, pop_size=4,
                            workers=0, run_dir=tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "program" / "program.json").read_text())
    assert meta["pinned_shapes"] == {"ids": [8, 12]} and meta["inputs"] == [[[8, 12], "int64"]]
    assert meta["source"] == str((tmp_path / "bag.onnx").resolve()) and len(meta["source_sha256"]) == 64
    assert len(front) >= 1


def test_a_dynamic_sequence_without_data_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _dynamic_onnx(tmp_path / "bag.onnx")
    with pytest.raises(ConfigError, match="dynamic dimension 1 \\(sequence\\); give data"):
        evoforge.evolve(tmp_path / "bag.onnx", budget=2, workers=0, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "program").exists()


def test_an_mlir_file_iree_cannot_lower_is_refused_before_any_compile(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from evoforge.mlir.program import from_torch

    torch.manual_seed(0)
    gru = torch.nn.GRU(4, 6, batch_first=True).eval()
    (tmp_path / "gru.mlir").write_text(from_torch(gru, torch.randn(8, 7, 4)).text)  # keeps aten.gru.input whole
    with pytest.raises(ConfigError, match="IREE cannot compile gru.mlir: .*gru.*; replace that op"):
        evoforge.evolve(tmp_path / "gru.mlir", budget=2, workers=0, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "program").exists()


def test_every_classification_task_is_a_built_in_program(tmp_path):
    """`evolve --task` takes the trained baseline of each built-in classification task (the error is
    1 - accuracy, which a regression task has not), and the training-program task."""
    from evoforge.cli import BUILTIN_TASK_NAMES
    from evoforge.mlir.api import BUILTIN_PROGRAMS
    from evoforge.mlir.sources import TRAIN_TASKS
    from evoforge.workload.task import BUILTIN_TASKS

    classification = {name for name in BUILTIN_TASKS if BUILTIN_TASKS[name].task_type == "classification"}
    assert set(BUILTIN_PROGRAMS) == classification | set(TRAIN_TASKS)
    assert set(BUILTIN_TASK_NAMES) == set(BUILTIN_TASKS)  # the CLI's spelled-out list
    with pytest.raises(ConfigError, match="series-regression"):
        evoforge.evolve("series-regression", budget=1, run_dir=tmp_path / "run")
