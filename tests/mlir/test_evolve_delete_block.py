"""Block deletion: bypassing a MobileNet-V1 same-shape block or a residual branch gives a program
that verifies, compiles, runs, replays exactly, and computes what the PyTorch model without that
block computes."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.genome import genome_from_json
from evoforge.mlir import irtools
from evoforge.mlir.describe import describe_edits
from evoforge.mlir.edits import DeleteBlock, EditError, EditListGenome
from evoforge.mlir.iree_runner import evaluate_variant
from evoforge.mlir.mutate import Session, apply_edits, branch_bypass, branch_sweep, bypass, is_join, random_edit

pytestmark = pytest.mark.iree

torch = pytest.importorskip("torch")
pytest.importorskip("iree.turbine")
nn = torch.nn


def _separable(channels: int) -> torch.nn.Module:
    """MobileNet V1's depthwise-separable block: dw 3x3-BN-ReLU, pw 1x1-BN-ReLU, same shape out."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
        nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
    )


class V1Run(nn.Module):
    """A stem, then V1's run of same-shape blocks; ``skip`` leaves one out."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.ModuleList([_separable(8) for _ in range(3)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        self.skip: int | None = None

    def forward(self, x):
        h = self.stem(x)
        for i, block in enumerate(self.blocks):
            if i != self.skip:
                h = block(h)
        return self.head(h)


class Residual(nn.Module):
    """A stem and two residual blocks relu(h + branch(h)); ``skip`` leaves one block out."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.branches = nn.ModuleList([nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                                     nn.Conv2d(8, 8, 3, padding=1)) for _ in range(2)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        self.skip: int | None = None

    def forward(self, x):
        h = self.stem(x)
        for i, branch in enumerate(self.branches):
            if i != self.skip:
                h = torch.relu(h + branch(h))
        return self.head(h)


class ResidualStack(nn.Module):
    """A stem and three residual blocks relu(h + branch(h)); ``skip`` leaves the blocks it names out."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.branches = nn.ModuleList([nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
                                       for _ in range(3)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        self.skip: frozenset[int] = frozenset()

    def forward(self, x):
        h = self.stem(x)
        for i, branch in enumerate(self.branches):
            if i not in self.skip:
                h = torch.relu(h + branch(h))
        return self.head(h)


def _exported(model: nn.Module):
    from evoforge.mlir.program import from_torch

    torch.manual_seed(0)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 3, 6, 6)
    return model, x, from_torch(model, x, level="torch")


def _ops(s: Session, name: str) -> list:
    return [op for op in irtools.walk(s.fn) if op.name == name and irtools.uid_of(op)]


def _check(model: nn.Module, x, program, edit: DeleteBlock, skip: int, worker) -> None:
    text = apply_edits(program, [edit])
    assert apply_edits(program, [edit]) == text  # replays exactly
    assert apply_edits(program, genome_from_json(EditListGenome(edits=(edit,)).to_json()).edits) == text
    result = evaluate_variant(program, [edit], [[x.numpy()]], worker=worker)
    assert result.ok, result.failure
    model.skip = skip
    with torch.no_grad():
        expected = model(x).numpy()
    model.skip = None
    np.testing.assert_allclose(result.outputs[0][0], expected, rtol=1e-4, atol=1e-5)


def test_bypassing_a_v1_same_shape_block_equals_the_model_without_it(worker) -> None:
    model, x, program = _exported(V1Run())
    with Session(program) as s:
        relus = _ops(s, "torch.aten.relu")
        assert len(relus) == 7  # stem + two per block
        edit = bypass(s, relus[4], relus[2].results[0])  # block 2 (index 1): from block 1's output to its own
    assert edit is not None
    with Session(program) as s:
        kinds = sorted(s.index()[u].name for u in edit.erased)
    assert kinds.count("torch.aten.conv2d") == 2 and kinds.count("torch.aten.relu") == 2
    _check(model, x, program, edit, skip=1, worker=worker)


def test_bypassing_a_residual_branch_with_its_add_equals_the_model_without_the_block(worker) -> None:
    model, x, program = _exported(Residual())
    with Session(program) as s:
        block_input = _ops(s, "torch.aten.relu")[0].results[0]  # the stem's output
        adds = [u.owner.operation for u in block_input.uses if u.owner.operation.name == "torch.aten.add.Tensor"]
        assert len(adds) == 1  # the first block's h + branch(h)
        edit = bypass(s, adds[0], block_input)
    assert edit is not None
    with Session(program) as s:
        kinds = sorted(s.index()[u].name for u in edit.erased)
    assert kinds.count("torch.aten.conv2d") == 2 and "torch.aten.add.Tensor" in kinds
    _check(model, x, program, edit, skip=0, worker=worker)


def test_branch_bypass_removes_each_residual_branch_with_its_add(worker) -> None:
    model, x, program = _exported(Residual())
    with Session(program) as s:
        joins = [op for op in irtools.walk(s.fn) if irtools.uid_of(op) and is_join(op)]
        assert [op.name for op in joins] == ["torch.aten.add.Tensor"] * 2
        edits = [branch_bypass(s, op) for op in joins]
        assert all(e is not None for e in edits)
        kinds = [sorted(s.index()[u].name for u in e.erased) for e in edits if e is not None]
    for k in kinds:  # the bypass to the identity, not to the branch (which would only drop the add)
        assert k.count("torch.aten.conv2d") == 2 and "torch.aten.add.Tensor" in k
    for skip, edit in enumerate(edits):
        assert edit is not None
        _check(model, x, program, edit, skip=skip, worker=worker)


def test_block_deletions_in_a_residual_program_often_remove_a_whole_branch() -> None:
    _, _, residual = _exported(Residual())
    rng = np.random.default_rng(0)
    with Session(residual) as s:
        convs = {irtools.uid_of(op) for op in _ops(s, "torch.aten.conv2d")}
    edits = [random_edit(residual, rng, "delete_block") for _ in range(20)]
    branches = [e for e in edits if len(convs.intersection(e.erased)) == 2]
    assert len(branches) >= 6  # about half are drawn as branch removals; a uniform end rarely is one
    _, _, v1 = _exported(V1Run())
    with Session(v1) as s:
        assert not any(is_join(op) for op in irtools.walk(s.fn) if irtools.uid_of(op))


class SharedBranch(nn.Module):
    """j2 = (h + s) + g(s) with s = f(h): the second join's branch reads the first's, as the
    parameter updates of a training step read one gradient chain; ``skip`` drops both joins."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.f, self.g = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        self.skip = False

    def forward(self, x):
        h = self.stem(x)
        s = self.f(h)
        return self.head(h if self.skip else (h + s) + self.g(s))


def test_a_block_edit_drawn_after_another_removal_replays_without_it(worker) -> None:
    """Drawn after j1's removal, j2's bypass records the ops that died there; replayed alone it
    removes what dies on the pristine program (j1 too), and computes the model without both."""
    model, x, program = _exported(SharedBranch())
    with Session(program) as s:
        h = _ops(s, "torch.aten.relu")[0].results[0]
        j1, j2 = _ops(s, "torch.aten.add.Tensor")
        first = bypass(s, j1, h)
        assert first is not None
        s.apply(first)
        second = bypass(s, j2, h)
    assert second is not None
    with Session(program) as s:
        alone = bypass(s, _ops(s, "torch.aten.add.Tensor")[1], _ops(s, "torch.aten.relu")[0].results[0])
    assert alone is not None and set(alone.erased) > set(second.erased)  # j1 dies with it here
    text = apply_edits(program, [second])
    assert apply_edits(program, [second]) == text == apply_edits(program, [first, second])
    assert f"delete the block of {len(alone.erased)} ops" in describe_edits(program, [second])[0]
    assert f"delete the block of {len(second.erased)} ops" in describe_edits(program, [first, second])[1]
    result = evaluate_variant(program, [second], [[x.numpy()]], worker=worker)
    assert result.ok, result.failure
    model.skip = True
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(result.outputs[0][0], expected, rtol=1e-4, atol=1e-5)


def test_a_block_edit_whose_end_is_gone_fails_to_replay(worker) -> None:
    _, _, program = _exported(V1Run())
    edit = random_edit(program, np.random.default_rng(0), "delete_block")
    assert edit.erased and apply_edits(program, [edit])
    with pytest.raises(EditError, match="does not exist"):
        apply_edits(program, [edit, edit])


def test_the_branch_sweep_removes_the_last_blocks_one_more_at_a_time(worker) -> None:
    """Entry k of the sweep is the network without its last k residual blocks, replayed exactly."""
    model, x, program = _exported(ResidualStack())
    sweep = branch_sweep(program, 5)
    assert [len(edits) for edits in sweep] == [1, 2, 3]  # three blocks to remove, however deep it may go
    assert branch_sweep(program, 2) == sweep[:2]
    for k, edits in enumerate(sweep, start=1):
        assert sweep[k - 1][: k - 1] == (sweep[k - 2] if k > 1 else ())  # each adds one removal to the last
        result = evaluate_variant(program, list(edits), [[x.numpy()]], worker=worker)
        assert result.ok, result.failure
        model.skip = frozenset(range(3 - k, 3))
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_allclose(result.outputs[0][0], expected, rtol=1e-4, atol=1e-5)
    assert branch_sweep(_exported(V1Run())[2], 5) == []  # no joins, no sweep


def test_an_evolve_run_on_a_residual_model_starts_from_the_branch_sweep(tmp_path) -> None:
    import evoforge
    from evoforge.api import open_store
    from evoforge.layout import RunLayout
    from evoforge.mlir.sources import read_prepared
    from evoforge.search.algorithms.base import WARM_START

    model, x, _ = _exported(ResidualStack())
    evoforge.evolve(model, example_input=x, budget=6, pop_size=6, workers=0, run_dir=tmp_path / "run", seed=1,
                    tune_flags=False, compare_runtimes="none")
    with open_store(tmp_path / "run", readonly=True) as store:
        first = store.batch(0)["offspring"]
        warm = [genome_from_json(store.genome(o["key"])).edits for o in first if o["operator"] == WARM_START]
        assert store.config()["domain"]["config"]["branch_sweep"] == 8
    assert warm == branch_sweep(read_prepared(RunLayout(tmp_path / "run").program), 3)  # half of the population of 6
    assert len(warm) == 3
    evoforge.evolve(model, example_input=x, budget=6, pop_size=6, workers=0, run_dir=tmp_path / "off", seed=1,
                    tune_flags=False, compare_runtimes="none", branch_sweep=0)
    with open_store(tmp_path / "off", readonly=True) as store:
        assert not [o for o in store.batch(0)["offspring"] if o["operator"] == WARM_START]
