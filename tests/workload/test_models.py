from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from evoforge.errors import UnknownNameError  # noqa: E402
from evoforge.workload.models import BUILTIN_MODELS  # noqa: E402

# name -> (input shape without batch, outputs, expected output shape for batch 5, param range)
CASES = {
    "digits_cnn": ((1, 8, 8), 10, (5, 10), (20_000, 60_000)),
    "digits_mlp": ((1, 8, 8), 10, (5, 10), (25_000, 27_000)),
    "mnist1d_cnn": ((1, 40), 10, (5, 10), (5_000, 30_000)),
    "series_cnn": ((1, 64), 1, (5,), (5_000, 30_000)),
    "digits_mobilenet": ((1, 8, 8), 10, (5, 10), (5_000, 30_000)),
    "two_fc_net": ((1, 8, 8), 10, (5, 10), (64 * 128 + 128 + 128 * 10 + 10,) * 2),
    "resnet18": ((3, 32, 32), 10, (5, 10), (11_100_000, 11_200_000)),
    "mobilenet_v1": ((3, 32, 32), 10, (5, 10), (3_200_000, 3_250_000)),
}


def test_every_builtin_model_is_covered() -> None:
    assert set(BUILTIN_MODELS) == {*CASES, "bert_tokens"}


def test_resnet18_is_torchvisions_architecture() -> None:
    """Same parameter names and shapes as torchvision's ResNet-18, and the same outputs with its weights."""
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    theirs = models.resnet18(num_classes=10).eval()
    ours = BUILTIN_MODELS["resnet18"](10).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), theirs(x))


def test_bert_tokens_takes_token_ids_and_a_mask() -> None:
    pytest.importorskip("transformers")
    model = BUILTIN_MODELS["bert_tokens"](4).eval()
    ids = torch.randint(1, 1000, (3, 16))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.logits.shape == (3, 4)
    assert 900_000 < sum(p.numel() for p in model.parameters()) < 1_100_000


_WITHOUT_SHIM = """
import importlib, sys
try:
    importlib.import_module("torchvision")
except Exception:
    pass
else:
    print("TORCHVISION-IMPORTS"); sys.exit(0)
from evoforge.errors import ConfigError
from evoforge.workload.models import BUILTIN_MODELS
try:
    BUILTIN_MODELS["bert_tokens"](2)
except ConfigError as exc:
    print(exc)
"""


def test_bert_tokens_names_a_broken_torchvision_as_the_cause() -> None:
    """transformers' model classes import torchvision when it is installed; when that import fails the
    error must say so, not transformers' generic 'Could not import module'."""
    pytest.importorskip("transformers")
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchvision is not installed")
    # torchvision where it is installed (the Makefile keeps it apart from the venv's packages), without the suite's shim
    env = {**os.environ, "PYTHONPATH": str(Path(next(iter(spec.submodule_search_locations))).parent)}
    out = subprocess.run([sys.executable, "-c", _WITHOUT_SHIM], env=env, capture_output=True, text=True, timeout=300)
    if "TORCHVISION-IMPORTS" in out.stdout:
        pytest.skip("torchvision imports without the shim here")
    assert "transformers does not import because torchvision fails to import" in out.stdout, out.stdout + out.stderr
    assert "install the torchvision build that matches your torch" in out.stdout


def test_bert_tokens_builds_in_the_installed_environment_and_prints_nothing_about_torchao() -> None:
    """As a user runs it, without the test suite's torchvision shim: the model builds (the venv
    `make` builds keeps its CUDA torchvision, which would stop transformers, out of the venv's
    packages). transformers imports torchao, which announces its CUDA-only kernels and registers
    Enums with notices; the user should see none of it."""
    pytest.importorskip("transformers")
    code = "from evoforge.workload.models import BUILTIN_MODELS; BUILTIN_MODELS['bert_tokens'](2)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Failed to load" not in out.stderr and "register_constant" not in out.stderr, out.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_shape_params_and_trace(name: str) -> None:
    shape, outputs, out_shape, (low, high) = CASES[name]
    torch.manual_seed(0)
    model = BUILTIN_MODELS[name](outputs).eval()
    x = torch.randn(5, *shape)
    out = model(x)
    assert tuple(out.shape) == out_shape
    assert low <= sum(p.numel() for p in model.parameters()) <= high
    traced = torch.jit.trace(model, x[:1])  # TorchScript-friendly, batch stays dynamic
    torch.testing.assert_close(traced(x), out)


@pytest.mark.parametrize("name", ["digits_cnn", "digits_mobilenet", "mnist1d_cnn"])
def test_num_outputs_sets_head_width(name: str) -> None:
    shape = CASES[name][0]
    assert BUILTIN_MODELS[name](3)(torch.randn(2, *shape)).shape == (2, 3)


def test_digits_cnn_has_1x1_shortcut_and_batchnorm() -> None:
    model = BUILTIN_MODELS["digits_cnn"](10)
    kernels = [m.kernel_size for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert (1, 1) in kernels
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_mobilenet_uses_depthwise_convs() -> None:
    model = BUILTIN_MODELS["digits_mobilenet"](10)
    assert any(m.groups == m.in_channels > 1 for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_mobilenet_v1_has_the_papers_shape() -> None:
    """A 32-channel stem, 13 depthwise-separable blocks with the run of five same-shape 512-channel
    blocks, a 1024-channel head."""
    model = BUILTIN_MODELS["mobilenet_v1"](10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    depthwise = [c for c in convs if c.groups == c.in_channels > 1]
    assert len(convs) == 1 + 2 * 13 and len(depthwise) == 13
    same_512 = [c for c in convs if c.kernel_size == (1, 1) and c.in_channels == c.out_channels == 512]
    assert len(same_512) == 5
    assert model.head.in_features == 1024


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="digits_cnn"):
        BUILTIN_MODELS["resnet50"]
