"""Operators on MLIR: drawing valid edits, deterministic replay, use-def repair rules."""

from __future__ import annotations

import re

import numpy as np
import pytest

from evoforge.errors import ConfigError
from evoforge.genome import genome_from_json
from evoforge.mlir.edits import EDIT_KINDS, TORCH_ONLY_KINDS, Delete, EditError, EditListGenome, OperandReplace, Source
from evoforge.mlir.mutate import apply_edits, random_edit
from evoforge.mlir.program import from_mlir
from tests.mlir.evolve_helpers import uid_names


def test_program_is_tagged_and_replays_to_itself(linalg_program):
    p = linalg_program
    assert p.entry == "main" and p.level == "linalg"
    assert [s.shape for s in p.inputs] == [(4, 6)] and p.outputs[0].dtype == "float32"
    assert 'evoforge.uid = "U0"' in p.text
    assert apply_edits(p, []) == p.text
    assert from_mlir(p.text).text == p.text


def test_unparsable_mlir_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot parse MLIR"):
        from_mlir("func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> { return %y }")
    with pytest.raises(ConfigError, match="already linalg"):
        from_mlir("func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> { return %x : tensor<4xf32> }", level="torch")


@pytest.mark.parametrize("kind", EDIT_KINDS)
@pytest.mark.parametrize("which", ["linalg", "torch"])
def test_random_edit_replays_identically(kind, which, linalg_program, tiny_torch):
    if which == "linalg" and kind in TORCH_ONLY_KINDS:
        pytest.skip(f"{kind} needs a torch-level program")
    program = linalg_program if which == "linalg" else tiny_torch[2]
    rng = np.random.default_rng(7)
    for _ in range(3):
        edit = random_edit(program, rng, kind)
        text = apply_edits(program, [edit])
        assert text != program.text
        assert apply_edits(program, [edit]) == text
        back = genome_from_json(EditListGenome(edits=(edit,)).to_json())
        assert apply_edits(program, back.edits) == text
        assert from_mlir(text).entry == program.entry  # the variant parses and verifies


def test_edits_stack_on_a_variant(tiny_torch):
    program = tiny_torch[2]
    rng = np.random.default_rng(1)
    edits: list = []
    for kind in ("copy", "resize", "operand_replace", "delete", "copy"):
        edits.append(random_edit(program, rng, kind, edits=edits))
    text = apply_edits(program, edits)
    assert apply_edits(program, edits) == text
    assert "evoforge.repair" in text or "evoforge.uid = \"U" in text


def test_targets_and_sources_respect_the_rules(linalg_program):
    names = uid_names(linalg_program)
    empties = {u for u, n in names.items() if n == "tensor.empty"}
    assert empties
    rng = np.random.default_rng(0)
    for _ in range(40):
        d = random_edit(linalg_program, rng, "delete")
        assert names.get(d.uid) not in ("func.return", "linalg.yield")
        for s in d.sources:
            assert s.value.split("#")[0] not in empties
        r = random_edit(linalg_program, rng, "operand_replace")
        assert r.source.value.split("#")[0] not in empties


def test_edit_that_no_longer_applies_raises(linalg_program):
    names = uid_names(linalg_program)
    relu_user = next(u for u, n in names.items() if n == "linalg.generic")
    matmul = next(u for u, n in names.items() if n == "linalg.matmul")
    delete_mm = Delete(uid=matmul, sources=(Source("arg0", 0),))
    uses_mm = OperandReplace(user=relu_user, operand=1, source=Source(f"{matmul}#0", 0))
    apply_edits(linalg_program, [uses_mm])
    with pytest.raises(EditError, match="does not exist"):
        apply_edits(linalg_program, [delete_mm, uses_mm])
    with pytest.raises(EditError, match="does not dominate"):
        apply_edits(linalg_program, [OperandReplace(user=matmul, operand=0, source=Source(f"{relu_user}#0", 0))])
    ret_uid = re.search(r'return \{evoforge\.uid = "(U\d+)"\}', linalg_program.text).group(1)
    with pytest.raises(EditError, match="cannot be deleted"):
        apply_edits(linalg_program, [Delete(uid=ret_uid, sources=())])


def test_draws_that_find_nothing_are_retried_without_parsing_again(linalg_program, monkeypatch):
    """A draw that returns nothing leaves the session unchanged, so only a failed edit costs a
    fresh parse of the program (on a GRU, an operator with no candidate parsed it 20 times)."""
    from evoforge.mlir import mutate

    sessions = []
    real_session = mutate.Session

    def counted(*args, **kwargs):
        sessions.append(1)
        return real_session(*args, **kwargs)

    monkeypatch.setattr(mutate, "Session", counted)
    real_draw = mutate._DRAW["operand_replace"]
    calls = []

    def sometimes(s, rng):
        calls.append(1)
        return real_draw(s, rng) if len(calls) > 5 else None

    monkeypatch.setitem(mutate._DRAW, "operand_replace", sometimes)
    edit = random_edit(linalg_program, np.random.default_rng(0), "operand_replace")
    assert len(calls) == 6 and len(sessions) == 2  # the variant's text once, then one session for six draws
    assert apply_edits(linalg_program, [edit]) != linalg_program.text
    sessions.clear()
    calls.clear()
    monkeypatch.setitem(mutate._DRAW, "operand_replace", lambda s, rng: calls.append(1))
    with pytest.raises(EditError, match="no valid operand_replace edit found in 20 draws"):
        random_edit(linalg_program, np.random.default_rng(0), "operand_replace")
    assert len(calls) == 20 and len(sessions) == 2


def test_unknown_kind_is_a_config_error(linalg_program):
    with pytest.raises(ConfigError, match="valid kinds"):
        random_edit(linalg_program, np.random.default_rng(0), "swap")


def test_from_onnx_names_the_missing_package(tmp_path):
    import importlib.util

    from evoforge.mlir.program import from_onnx

    if importlib.util.find_spec("onnx") is not None:
        pytest.skip("onnx is installed")
    with pytest.raises(ImportError, match="pip install onnx"):
        from_onnx(tmp_path / "model.onnx")
