from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from evoforge.compression.genome import IMPORTANCES, Stage
from evoforge.compression.stages import apply_stage
from evoforge.errors import ConfigError, PruningWarning
from tests.support.torch_fixtures import RegroupCNN, ResCNN, accuracy, cnn1d, depthwise_cnn, make_ctx, n_params

pytestmark = pytest.mark.usefixtures("single_thread")


def _prune(model: nn.Module, ctx, **params) -> nn.Module:
    spec = dict(importance="l1", ratio=0.5, steps=1, allocation="uniform", round_to=1, epochs=0) | params
    return apply_stage(model, Stage.make("prune", **spec), ctx)


def _widths(model: nn.Module) -> list[int]:
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features for m in layers]


@pytest.mark.parametrize("importance", IMPORTANCES)
def test_every_importance_prunes_the_residual_cnn(importance: str, rescnn: nn.Module, digits) -> None:
    ctx = make_ctx(rescnn, digits)
    assert ctx.protected == ("stem.0", "fc")
    before = n_params(rescnn)
    pruned = _prune(rescnn, ctx, importance=importance)
    assert n_params(pruned) < 0.6 * before
    assert pruned.stem[0].in_channels == 1 and pruned.fc.out_features == 10  # protected edges
    assert pruned.conv1.out_channels == 8 and pruned.down[0].out_channels == 16  # half of each unprotected group
    assert pruned.bn1.num_features == 8 and pruned.fc.in_features == 16  # coupled layers follow
    assert pruned(torch.as_tensor(digits.test.x[:5])).shape == (5, 10)
    assert not any(p.grad is not None for p in pruned.parameters())  # importance gradients are not left behind


def test_iterative_steps_reach_the_ratio_and_round_to_rounds(rescnn: nn.Module, digits) -> None:
    ctx = make_ctx(rescnn, digits)
    one = _prune(copy.deepcopy(rescnn), ctx, ratio=0.6)
    three = _prune(copy.deepcopy(rescnn), ctx, ratio=0.6, steps=3)
    assert _widths(one) == _widths(three)
    rounded = _prune(copy.deepcopy(rescnn), ctx, ratio=0.6, round_to=8)
    assert rounded.conv1.out_channels % 8 == 0 and rounded.down[0].out_channels % 8 == 0
    assert rounded.conv1.out_channels > one.conv1.out_channels  # 16 * 0.4 = 6.4 channels -> 8


def test_global_allocation_ranks_channels_across_layers(rescnn: nn.Module, trained_mlp: nn.Module, digits) -> None:
    ctx = make_ctx(rescnn, digits)
    glob = _prune(rescnn, ctx, importance="l1", allocation="global")
    kept = (glob.conv1.out_channels, glob.down[0].out_channels)
    assert sum(kept) == (16 + 32) // 2  # the same total as uniform ...
    assert kept != (8, 16)  # ... shared out by importance, not per layer
    ctx = make_ctx(trained_mlp, digits)
    assert ctx.protected == ("1", "5")
    pruned = _prune(trained_mlp, ctx, importance="l2", allocation="global")
    assert pruned[1].out_features == 128 and pruned[3].out_features == 64  # only the middle layer's outputs
    assert pruned[1].in_features == 64 and pruned[5].out_features == 10


def test_fine_tuning_recovers_quality(rescnn: nn.Module, digits) -> None:
    ctx = make_ctx(rescnn, digits)
    raw = _prune(copy.deepcopy(rescnn), ctx, importance="taylor", ratio=0.5, steps=2)
    tuned = _prune(copy.deepcopy(rescnn), ctx, importance="taylor", ratio=0.5, steps=2, epochs=4)
    assert _widths(raw) == _widths(tuned)
    assert accuracy(tuned, digits.val) >= 0.9
    assert accuracy(tuned, digits.val) > accuracy(raw, digits.val)


@pytest.mark.parametrize("build", [cnn1d, depthwise_cnn])
def test_other_architectures(build, digits, series) -> None:
    data = series if build is cnn1d else digits
    torch.manual_seed(0)
    model = build()
    ctx = make_ctx(model, data, loss="mse" if build is cnn1d else "cross_entropy")
    before = n_params(model)
    pruned = _prune(model, ctx, importance="hessian", ratio=0.5, steps=2, round_to=4)
    assert n_params(pruned) < 0.7 * before
    out = pruned(torch.as_tensor(data.test.x[:3]))
    assert out.shape == (3, 1 if build is cnn1d else 10)
    if build is depthwise_cnn:  # the depthwise conv shrinks together with the conv feeding it
        dw = pruned[3]
        assert dw.groups == dw.in_channels == dw.out_channels == pruned[0].out_channels == 16  # protected stem
        assert pruned[6].out_channels == 16


def test_bn_scale_falls_back_to_l1_without_batch_norm(trained_mlp: nn.Module, digits) -> None:
    ctx = make_ctx(trained_mlp, digits)
    a = _prune(copy.deepcopy(trained_mlp), ctx, importance="bn_scale")
    b = _prune(copy.deepcopy(trained_mlp), ctx, importance="l1")
    assert a[3].out_features == 64
    assert torch.equal(a[3].weight, b[3].weight)


def test_same_seed_same_channels(rescnn: nn.Module, digits) -> None:
    def run(seed: int) -> torch.Tensor:
        ctx = make_ctx(rescnn, digits, seed=seed)
        return _prune(copy.deepcopy(rescnn), ctx, importance="random", epochs=1).conv1.weight.detach()

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_protected_layer_is_a_config_error(digits) -> None:
    model = ResCNN()
    ctx = make_ctx(model, digits)
    bad = dataclasses.replace(ctx, protected=("nope",))
    with pytest.raises(ConfigError, match="nope"):
        _prune(model, bad)
    with pytest.raises(ConfigError, match="choose one of"):
        Stage.make("prune", importance="fisher", ratio=0.5, steps=1, allocation="uniform", round_to=1, epochs=0)


@pytest.mark.parametrize("regroup", ["shuffle", "flip", "none"])
def test_layers_whose_channels_torch_pruning_misreads_are_found(regroup: str) -> None:
    from evoforge.compression.stages.prune import misread_layers

    torch.manual_seed(0)
    model = RegroupCNN(regroup).eval()
    stage = Stage.make("prune", importance="l1", ratio=0.5, steps=1, allocation="uniform", round_to=1, epochs=0)
    found = misread_layers(model, torch.randn(1, 1, 8, 8), stage, [model.stem[0], model.fc], {})
    assert found == ([] if regroup == "none" else [model.mid[0]])


def _silence(model: nn.Module, channels: list[int]) -> None:
    for conv, bn in ((model.mid[0], model.mid[1]), (model.last[0], model.last[1])):
        with torch.no_grad():
            conv.weight[channels] = 0
            bn.weight[channels] = bn.bias[channels] = 0


@pytest.mark.parametrize("regroup", ["shuffle", "flip"])
def test_pruning_keeps_misread_channels_and_computes_what_it_did(regroup: str, digits) -> None:
    torch.manual_seed(0)
    model = RegroupCNN(regroup).eval()
    _silence(model, [1, 4, 6, 7, 9, 10, 12, 15])  # half of mid's and last's channels dead: magnitude prunes exactly those
    x = torch.as_tensor(digits.test.x[:8])
    with torch.no_grad():
        expected = model(x)
    with pytest.warns(PruningWarning, match=r"\[.mid\.0.\]"):
        pruned = _prune(model, make_ctx(model, digits))
    assert pruned.mid[0].out_channels == 16 and pruned.last[0].out_channels == 8
    with torch.no_grad():  # torch-pruning alone removes mid's dead channels from the wrong inputs of last
        assert torch.allclose(pruned.eval()(x), expected, atol=1e-5)


@pytest.mark.parametrize(("ratio", "steps", "heads", "left"), [(0.5, 1, 4, 2), (0.5, 2, 4, 2), (0.5, 3, 4, 2), (0.9, 4, 4, 1),
                                                               (0.1, 2, 4, 4), (0.3, 2, 12, 8)])
def test_head_schedule_ends_at_the_asked_share(ratio, steps, heads, left):
    import math

    from evoforge.compression.stages.prune import head_schedule

    shares = head_schedule(ratio, steps, heads)
    assert len(shares) == steps + 1 and shares[0] == 0.0
    current = heads
    for share in shares[1:]:
        current -= math.ceil(share * current)  # what torch-pruning removes per step
    assert current == left
