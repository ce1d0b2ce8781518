"""Edit-target weighting: op cost estimates, the cost-weighted draw, and its wiring into the domain."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.errors import ConfigError
from evoforge.mlir import irtools
from evoforge.mlir.edits import TARGET_WEIGHTINGS
from evoforge.mlir.mutate import COST_SHARE, Session, random_edit

torch = pytest.importorskip("torch")
pytest.importorskip("iree.turbine")


class ConvNet(torch.nn.Module):
    """A stem conv, a depthwise conv, a pointwise conv (each with batch norm and ReLU), then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        return self.head(self.body(x))


@pytest.fixture(scope="module")
def conv_program():
    from evoforge.mlir.program import from_torch

    torch.manual_seed(0)
    return from_torch(ConvNet().eval(), torch.randn(4, 1, 8, 8), level="torch")


def _costs_by_name(program) -> dict[str, list[float]]:
    with Session(program) as s:
        costs: dict[str, list[float]] = {}
        for op in irtools.walk(s.fn):
            costs.setdefault(op.name, []).append(irtools.op_cost(op))
        return costs


def test_op_cost_counts_multiply_accumulates_of_convolutions_and_matrix_products(conv_program, linalg_program):
    costs = _costs_by_name(conv_program)
    convs = sorted(costs["torch.aten.conv2d"])
    # output elements x contraction: stem 4*8*8*8 x 1*3*3, depthwise the same (one input channel per group),
    # pointwise 4*16*8*8 x 8*1*1
    assert convs == [4 * 8 * 64 * 9, 4 * 8 * 64 * 9, 4 * 16 * 64 * 8]
    assert costs["torch.aten.linear"] == [4 * 3 * 16]
    assert costs["torch.aten.relu"] and all(c in (4 * 8 * 64, 4 * 16 * 64) for c in costs["torch.aten.relu"])
    linalg = _costs_by_name(linalg_program)
    assert sorted(linalg["linalg.matmul"]) == [4 * 3 * 5, 4 * 5 * 6]  # [4,5] from K=6, [4,3] from K=5
    assert linalg["linalg.generic"] == [4 * 5]  # element-wise: its result's elements
    assert linalg["func.return"] == [0.0]


def test_cost_weighted_pick_follows_the_mixture(conv_program):
    items = ["cheap", "mid", "dear"]
    cost = {"cheap": 0.0, "mid": 1.0, "dear": 3.0}.__getitem__
    rng = np.random.default_rng(0)
    with Session(conv_program, targets="cost") as s:
        draws = [s.pick(rng, items, cost) for _ in range(8000)]
    expected = {k: (1 - COST_SHARE) / 3 + COST_SHARE * cost(k) / 4.0 for k in items}
    for k in items:
        assert draws.count(k) / len(draws) == pytest.approx(expected[k], abs=0.02)
    with Session(conv_program) as s:  # uniform ignores the costs
        uniform = [s.pick(rng, items, cost) for _ in range(3000)]
    assert all(uniform.count(k) / len(uniform) == pytest.approx(1 / 3, abs=0.03) for k in items)


def test_cost_weighting_sends_more_deletes_and_resizes_to_convolutions(conv_program):
    with Session(conv_program) as s:
        names = {irtools.uid_of(op): op.name for op in irtools.walk(s.fn)}

    def conv_share(targets: str) -> float:
        rng = np.random.default_rng(1)
        hits = 0
        for _ in range(60):
            edit = random_edit(conv_program, rng, "delete", targets=targets)
            hits += names[edit.uid] == "torch.aten.conv2d"
        return hits / 60

    uniform, weighted = conv_share("uniform"), conv_share("cost")
    assert weighted > uniform + 0.2
    rng = np.random.default_rng(2)
    edits = [random_edit(conv_program, rng, "resize_importance", targets="cost") for _ in range(30)]
    # the weights in order stem, depthwise, pointwise, linear: the two 3x3 convs and the pointwise conv
    # share almost all the cost, the linear head gets only its uniform share
    linear = sum(e.value == _literal_of(conv_program, "torch.aten.linear") for e in edits)
    assert linear <= 6


def _literal_of(program, consumer: str) -> str:
    """The value name of the weight literal the first ``consumer`` op reads."""
    with Session(program) as s:
        op = next(op for op in irtools.walk(s.fn) if op.name == consumer)
        return irtools.value_name(op.operands[1], s.fn)


def test_unknown_weighting_is_a_config_error_naming_the_valid_ones(conv_program, tmp_path):
    import evoforge
    from evoforge.mlir.domain import EvolveDomain

    with pytest.raises(ConfigError, match="unknown edit_targets 'hot'; valid: uniform, cost"):
        Session(conv_program, targets="hot")
    with pytest.raises(ConfigError, match="unknown edit_targets 'hot'; valid: uniform, cost"):
        EvolveDomain(edit_targets="hot")
    with pytest.raises(ConfigError, match="unknown edit_targets"):
        evoforge.evolve(tmp_path / "missing.mlir", edit_targets="hot", run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert EvolveDomain(edit_targets="cost").config()["edit_targets"] == "cost"
    assert EvolveDomain().config()["edit_targets"] == TARGET_WEIGHTINGS[0] == "uniform"
