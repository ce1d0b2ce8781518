from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import nn

from evoforge.compression.genome import TORCH_AO_MODES, Stage, TrainingSettings
from evoforge.compression.stages import apply_stage
from evoforge.workload.training import predict, train
from tests.support.torch_fixtures import ResCNN, accuracy, depthwise_cnn, make_ctx

pytestmark = pytest.mark.usefixtures("single_thread")


def _quantize(model: nn.Module, ctx, **params) -> nn.Module:
    spec = dict(mode="static", per_channel=False, keep_float_edges=False, epochs=1) | params
    return apply_stage(copy.deepcopy(model), Stage.make("quantize", **spec), ctx)


def _roundtrip(model: nn.Module, x: torch.Tensor, *, script: bool = False) -> tuple[int, torch.Tensor]:
    """Serialized TorchScript size in bytes and the reloaded module's output."""
    with torch.no_grad():
        exported = torch.jit.script(model) if script else torch.jit.trace(model, x[:1])
    buffer = io.BytesIO()
    torch.jit.save(exported, buffer)
    buffer.seek(0)
    with torch.no_grad():
        return len(buffer.getvalue()), torch.jit.load(buffer)(x)


def _is_float(module: nn.Module) -> bool:
    """A float layer (possibly fused with its ReLU), with no quantized module inside."""
    weights = [p for p in module.parameters() if p.dim() > 1]
    return not _quantized_modules(module) and len(weights) == 1 and weights[0].dtype == torch.float32


def _quantized_modules(model: nn.Module) -> list[str]:
    return [type(m).__module__ for m in model.modules() if "quantized" in type(m).__module__]


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("mode", TORCH_AO_MODES)
def test_every_mode_shrinks_the_mlp_and_keeps_its_quality(mode: str, per_channel: bool, trained_mlp: nn.Module, digits) -> None:
    ctx = make_ctx(trained_mlp, digits)
    q = _quantize(trained_mlp, ctx, mode=mode, per_channel=per_channel)
    assert _quantized_modules(q)
    x = torch.as_tensor(digits.test.x)
    float_size, _ = _roundtrip(trained_mlp, x)
    q_size, q_out = _roundtrip(q, x, script=mode == "dynamic")
    assert q_size < 0.75 * float_size  # int8 weights
    torch.testing.assert_close(q_out, q(x))  # TorchScript round trip
    assert accuracy(q, digits.test) >= accuracy(trained_mlp, digits.test) - 0.03
    agree = (predict(q, digits.test)[0].argmax(1) == predict(trained_mlp, digits.test)[0].argmax(1)).mean()
    assert agree >= 0.95


def test_static_fx_on_a_residual_cnn_with_batch_norm(rescnn: nn.Module, digits) -> None:
    ctx = make_ctx(rescnn, digits)
    q = _quantize(rescnn, ctx, per_channel=True)
    assert isinstance(q, torch.fx.GraphModule)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in q.modules())  # folded into the int8 convs
    x = torch.as_tensor(digits.test.x)
    float_size, _ = _roundtrip(rescnn, x)
    q_size, q_out = _roundtrip(q, x)
    assert q_size < float_size
    torch.testing.assert_close(q_out, q(x))
    assert accuracy(q, digits.test) >= accuracy(rescnn, digits.test) - 0.03
    logits, ref = predict(q, digits.test)[0], predict(rescnn, digits.test)[0]
    assert abs(logits - ref).mean() < 0.1 * abs(ref).mean()


def test_keep_float_edges_leaves_the_protected_layers_in_float(trained_mlp: nn.Module, rescnn: nn.Module, digits) -> None:
    ctx = make_ctx(trained_mlp, digits)
    for mode in TORCH_AO_MODES:
        q = _quantize(trained_mlp, ctx, mode=mode, keep_float_edges=True, epochs=0)
        modules = dict(q.named_modules())
        assert _is_float(modules["1"]) and _is_float(modules["5"]), mode
        assert "quantized" in type(modules["3"]).__module__, mode
    ctx = make_ctx(rescnn, digits)
    q = _quantize(rescnn, ctx, keep_float_edges=True)
    assert _is_float(dict(q.named_modules())["fc"])
    x = torch.as_tensor(digits.test.x)
    torch.testing.assert_close(_roundtrip(q, x)[1], q(x))


class Branchy(ResCNN):
    """Not FX-traceable: control flow on a tensor property."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return super().forward(x)


@pytest.mark.parametrize("mode", ["static", "qat"])
def test_eager_fallback_when_fx_tracing_fails(mode: str, rescnn: nn.Module, digits) -> None:
    model = Branchy()
    model.load_state_dict(rescnn.state_dict())
    ctx = make_ctx(model, digits)
    q = _quantize(model, ctx, mode=mode, keep_float_edges=True)
    assert type(q) is Branchy
    assert type(q.fc) is nn.Linear and type(q.stem[0]) is nn.Conv2d  # kept in float
    assert type(q.stem[1]) is nn.BatchNorm2d  # not fused into the float stem (float stays float)
    assert type(q.conv1[1]).__name__ == "ConvReLU2d" and type(q.bn1) is nn.Identity  # conv1 -> bn1 -> relu1 fused
    assert type(q.conv2[1]).__name__ == "Conv2d" and type(q.bn2) is nn.Identity  # relu2 follows the add, not bn2
    x = torch.as_tensor(digits.test.x)
    assert accuracy(q, digits.test) >= accuracy(model, digits.test) - 0.03
    torch.testing.assert_close(_roundtrip(q, x)[1], q(x))


def test_conv1d_regression_and_depthwise(trained_cnn1d: nn.Module, series, digits) -> None:
    ctx = make_ctx(trained_cnn1d, series, loss="mse")
    q = _quantize(trained_cnn1d, ctx, mode="qat", per_channel=True, epochs=1)
    err = ((predict(q, series.test)[0].reshape(-1) - series.test.y) ** 2).mean()
    base = ((predict(trained_cnn1d, series.test)[0].reshape(-1) - series.test.y) ** 2).mean()
    assert err < 1.5 * base + 0.02
    torch.manual_seed(0)
    dw = train(depthwise_cnn(), digits, TrainingSettings(lr=3e-3), epochs=2, seed=0)
    q = _quantize(dw, make_ctx(dw, digits), per_channel=True)
    assert any(getattr(m, "groups", 1) == 16 for m in q.modules() if "quantized" in type(m).__module__)
    x = torch.as_tensor(digits.test.x)
    torch.testing.assert_close(_roundtrip(q, x)[1], q(x))


def test_only_deprecation_warnings_are_silenced(trained_mlp: nn.Module, digits) -> None:
    ctx = make_ctx(trained_mlp, digits)
    engine = torch.backends.quantized.engine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _quantize(trained_mlp, ctx, mode="static")
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert torch.backends.quantized.engine == engine  # the global engine is restored


def test_quantize_is_deterministic(trained_mlp: nn.Module, digits) -> None:
    ctx = make_ctx(trained_mlp, digits)
    a = predict(_quantize(trained_mlp, ctx, mode="qat"), digits.test)[0]
    b = predict(_quantize(trained_mlp, ctx, mode="qat"), digits.test)[0]
    assert (a == b).all()


def test_weight_only_has_no_torch_ao_form(trained_mlp: nn.Module, digits) -> None:
    from evoforge.errors import ConfigError

    with pytest.raises(ConfigError, match="int8 mode 'weight_only' has no torch.ao form .*inductor"):
        _quantize(trained_mlp, make_ctx(trained_mlp, digits), mode="weight_only")
