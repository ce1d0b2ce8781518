from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from evoforge.compression.genome import Stage
from evoforge.compression.stages import apply_stage
from evoforge.compression.stages.lowrank import (
    SVDLayer,
    energy_rank,
    factorization_pays,
    factorize,
    fold_all,
    round_rank,
    spectral_regularizer,
)
from evoforge.errors import ConfigError
from evoforge.workload.training import loss_function, train, validation_loss
from tests.support.torch_fixtures import accuracy, depthwise_cnn, make_ctx, n_params

pytestmark = pytest.mark.usefixtures("single_thread")


def test_energy_rank_is_the_smallest_rank_reaching_the_energy() -> None:
    s = torch.tensor([1.0, 3.0, 0.5, 2.0])  # order does not matter; energies 9, 4, 1, 0.25 of 14.25
    assert [energy_rank(s, e) for e in (0.6, 0.63, 0.64, 0.9, 0.95, 0.99, 1.0)] == [1, 1, 2, 2, 3, 4, 4]
    assert energy_rank(torch.ones(4), 0.5) == 2  # exactly on the boundary counts as reached
    assert energy_rank(torch.tensor([5.0, -5.0, 0.0]), 0.9) == 2  # sign does not matter
    with pytest.raises(ConfigError, match="energy"):
        energy_rank(s, 0.0)


def test_rank_rounding_and_keep_rule() -> None:
    assert [round_rank(r, 64) for r in (1, 4, 5, 8, 9, 63)] == [4, 4, 8, 8, 12, 64]
    assert round_rank(7, 6) == 6  # capped at full rank
    assert factorization_pays(4, 16, 16) and not factorization_pays(8, 16, 16)  # 256 < 256 is false
    assert factorization_pays(26, 32, 144) and not factorization_pays(27, 32, 144)  # conv 16->32, 3x3: n = 16*9


@pytest.mark.parametrize(
    "layer",
    [nn.Linear(20, 12), nn.Conv1d(4, 6, 5, stride=2, padding=2), nn.Conv2d(3, 8, 3, stride=2, padding=1, dilation=1, bias=False)],
    ids=["linear", "conv1d", "conv2d"],
)
def test_svd_layer_reproduces_the_layer(layer: nn.Module) -> None:
    torch.manual_seed(0)
    shape = {nn.Linear: (5, 20), nn.Conv1d: (2, 4, 17), nn.Conv2d: (2, 3, 9, 9)}[type(layer)]
    x = torch.randn(shape)
    svd = SVDLayer(layer)
    torch.testing.assert_close(svd(x), layer(x), atol=1e-5, rtol=1e-4)
    assert float(svd.orthogonality().detach()) < 1e-8
    svd.s.data = torch.tensor([2.0] + [0.0] * (len(svd.s) - 1))
    assert float(svd.hoyer().detach()) == pytest.approx(1.0)


def _low_rank_weight(out: int, n: int, rank: int) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(out, rank) @ torch.randn(rank, n)


def test_fold_keeps_factors_only_where_they_pay() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, padding=1)
    conv.weight.data = _low_rank_weight(32, 16 * 9, 5).reshape(conv.weight.shape)
    x = torch.randn(2, 16, 8, 8)
    folded = SVDLayer(conv).fold(0.999)
    assert isinstance(folded, nn.Sequential) and folded[0].out_channels == 8  # rank 5 rounded up to 8
    assert folded[0].kernel_size == (3, 3) and folded[1].kernel_size == (1, 1) and folded[1].out_channels == 32
    assert n_params(folded) == 8 * 16 * 9 + 32 * 8 + 32
    torch.testing.assert_close(folded(x), conv(x), atol=1e-4, rtol=1e-4)

    dense = nn.Linear(16, 16)
    folded = SVDLayer(dense).fold(0.999)  # random weights: full rank, factors would not be smaller
    assert type(folded) is nn.Linear and folded.weight.shape == (16, 16)
    x = torch.randn(3, 16)
    torch.testing.assert_close(folded(x), dense(x), atol=1e-5, rtol=1e-4)


def test_factorize_skips_protected_grouped_and_tiny_layers() -> None:
    model = depthwise_cnn()
    model[6] = nn.Conv2d(16, 64, 3, padding=1)  # big enough to pay at rank 4
    model[7] = nn.BatchNorm2d(64)
    model[11] = nn.Linear(64, 10)
    names = factorize(model, protected=("0", "11"))
    assert names == ["6"]  # "3" is depthwise; "0" and "11" are protected
    assert isinstance(model[6], SVDLayer) and type(model[3]) is nn.Conv2d


def test_an_embedding_table_folds_into_a_narrow_table_and_a_projection() -> None:
    """ALBERT's factorized embedding: an (entries x dim) table of rank 5 becomes an 8-wide table
    and a Linear 8 -> dim with the same lookups; the padding row keeps its index."""
    torch.manual_seed(0)
    table = nn.Embedding(50, 32, padding_idx=0)
    table.weight.data = _low_rank_weight(50, 32, 5)
    ids = torch.randint(0, 50, (3, 7))
    svd = SVDLayer(table)
    torch.testing.assert_close(svd(ids), table(ids), atol=1e-5, rtol=1e-4)
    folded = svd.fold(0.999)
    assert isinstance(folded, nn.Sequential) and type(folded[0]) is nn.Embedding and type(folded[1]) is nn.Linear
    assert folded[0].weight.shape == (50, 8) and folded[0].padding_idx == 0 and folded[1].weight.shape == (32, 8)
    assert folded[1].bias is None and n_params(folded) == 50 * 8 + 8 * 32
    torch.testing.assert_close(folded(ids), table(ids), atol=1e-4, rtol=1e-4)
    full = SVDLayer(nn.Embedding(6, 32)).fold(0.999)  # 6 entries: factors would not be smaller
    assert type(full) is nn.Embedding and full.weight.shape == (6, 32)


class _TiedLanguageModel(nn.Module):
    def __init__(self, tie: bool) -> None:
        super().__init__()
        self.embed, self.mix, self.head = nn.Embedding(40, 16), nn.Linear(16, 16), nn.Linear(16, 40, bias=False)
        if tie:
            self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.mix(self.embed(ids))))


def test_factorize_leaves_weights_that_layers_share_alone() -> None:
    """An output layer tied to the embedding would keep the full table beside the factors."""
    assert factorize(_TiedLanguageModel(tie=False)) == ["embed", "mix", "head"]
    tied = _TiedLanguageModel(tie=True)
    assert factorize(tied) == ["mix"] and type(tied.embed) is nn.Embedding and tied.head.weight is tied.embed.weight
    assert factorize(nn.Sequential(nn.Embedding(40, 16, max_norm=1.0), nn.Linear(16, 40))) == ["1"]  # max_norm renormalizes rows


def test_hoyer_regularizer_sparsifies_the_spectrum(trained_mlp: nn.Module, digits) -> None:
    def spectrum_rank(hoyer: float) -> int:
        model = copy.deepcopy(trained_mlp)
        factorize(model, protected=("1", "5"))
        train(model, digits, make_ctx(model, digits).training, epochs=2, seed=0, extra_loss=spectral_regularizer(hoyer, 0.0))
        return energy_rank(model[3].s, 0.9)

    assert spectrum_rank(5.0) < spectrum_rank(0.0)


def test_lowrank_stage_gives_plain_smaller_layers(trained_mlp: nn.Module, digits) -> None:
    ctx = make_ctx(trained_mlp, digits, hoyer_weight=2.0, ortho_weight=1.0)
    loss = loss_function("cross_entropy", "classification")
    before, val_before = n_params(trained_mlp), validation_loss(trained_mlp, digits, loss)
    out = apply_stage(copy.deepcopy(trained_mlp), Stage.make("lowrank", energy=0.9, reg_epochs=2, epochs=2), ctx)
    assert not any(isinstance(m, SVDLayer) for m in out.modules())
    assert type(out[1]) is nn.Linear and type(out[5]) is nn.Linear  # protected edges stay dense
    assert isinstance(out[3], nn.Sequential) and out[3][0].out_features % 4 == 0
    r = out[3][0].out_features
    assert r * (128 + 128) < 128 * 128 and n_params(out) < before
    assert accuracy(out, digits.test) >= accuracy(trained_mlp, digits.test) - 0.05
    assert validation_loss(out, digits, loss) < 2 * val_before
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(out), buffer)  # no custom parametrization left
    buffer.seek(0)
    x = torch.as_tensor(digits.test.x[:4])
    torch.testing.assert_close(torch.jit.load(buffer)(x), out(x))


def test_lowrank_stage_on_a_regression_cnn_is_deterministic(trained_cnn1d: nn.Module, series) -> None:
    ctx = make_ctx(trained_cnn1d, series, loss="huber")
    stage = Stage.make("lowrank", energy=0.8, reg_epochs=1, epochs=1)
    a = apply_stage(copy.deepcopy(trained_cnn1d), stage, ctx)
    b = apply_stage(copy.deepcopy(trained_cnn1d), stage, ctx)
    assert isinstance(a[2], nn.Sequential) and isinstance(a[2][0], nn.Conv1d) and a[2][0].stride == (2,)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    out = a(torch.as_tensor(series.test.x[:3]))
    assert out.shape == (3, 1)
    fold_all(a, 0.9)  # nothing left to fold
    assert all(not isinstance(m, SVDLayer) for m in a.modules())
