from __future__ import annotations

import copy
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from evoforge.errors import EvaluationError  # noqa: E402
from evoforge.runtimes.torchscript import export_model, load_exported  # noqa: E402
from evoforge.workload.models import digits_cnn, digits_mlp, series_cnn  # noqa: E402


def _trained_ish(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics so BN handling shows up in outputs."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 1, 8, 8))
    return model.eval()


def _lowrank(mlp: nn.Module) -> nn.Module:
    model = copy.deepcopy(mlp)
    model.net[1] = nn.Sequential(nn.Linear(64, 8, bias=False), nn.Linear(8, 128))
    return model


def _dynamic_int8(mlp: nn.Module) -> nn.Module:
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(mlp), {nn.Linear}, dtype=torch.qint8)


def _fx_static_int8(model: nn.Module) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    x = torch.randn(1, 1, 8, 8)
    prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), (x,))
    with torch.no_grad():
        prepared(torch.randn(64, 1, 8, 8))
    return convert_fx(prepared)


class _EagerQuant(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.inner = inner
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.inner(self.quant(x)))


def _eager_static_int8(mlp: nn.Module) -> nn.Module:
    model = _EagerQuant(copy.deepcopy(mlp)).eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(model, inplace=True)
    with torch.no_grad():
        model(torch.randn(64, 1, 8, 8))
    return torch.ao.quantization.convert(model)


def _pruned(model: nn.Module) -> nn.Module:
    tp = pytest.importorskip("torch_pruning")
    model = copy.deepcopy(model)
    tp.pruner.MetaPruner(
        model, torch.randn(1, 1, 8, 8), importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5, ignored_layers=[model.head],
    ).step()
    return model


VARIANTS = {
    "float_cnn": lambda: _trained_ish(digits_cnn()),
    "pruned_cnn": lambda: _pruned(_trained_ish(digits_cnn())),
    "lowrank_mlp": lambda: _lowrank(digits_mlp().eval()),
    "dynamic_int8_mlp": lambda: _dynamic_int8(digits_mlp().eval()),
    "fx_int8_cnn": lambda: _fx_static_int8(_trained_ish(digits_cnn())),
    "eager_int8_mlp": lambda: _eager_static_int8(digits_mlp().eval()),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_export_roundtrip_any_batch(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = VARIANTS[name]()
    path = export_model(model, torch.randn(1, 1, 8, 8), tmp_path / "m.pt")
    assert path.is_file() and path.stat().st_size > 0
    x = torch.randn(64, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(load_exported(path)(x), expected, atol=1e-4, rtol=1e-3)
    with zipfile.ZipFile(path) as archive:  # no source ranges: they name the user's source files
        assert not [n for n in archive.namelist() if n.endswith(".debug_pkl")]
    assert b"models.py" not in path.read_bytes()


def test_export_does_not_change_model_mode(tmp_path: Path) -> None:
    model = digits_cnn().train()
    export_model(model, torch.randn(1, 1, 8, 8), tmp_path / "m.pt")
    assert model.training


def test_int8_artifact_is_smaller(tmp_path: Path) -> None:
    mlp = digits_mlp().eval()
    x = torch.randn(1, 1, 8, 8)
    fp32 = export_model(mlp, x, tmp_path / "fp32.pt").stat().st_size
    int8 = export_model(_dynamic_int8(mlp), x, tmp_path / "int8.pt").stat().st_size
    assert int8 < 0.5 * fp32


def test_regression_model_exports(tmp_path: Path) -> None:
    model = series_cnn().eval()
    path = export_model(model, torch.randn(1, 1, 64), tmp_path / "s.pt")
    assert load_exported(path)(torch.randn(7, 1, 64)).shape == (7,)


def test_untraceable_model_raises_evaluation_error(tmp_path: Path) -> None:
    class Dicty(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"y": x * 2}

    with pytest.raises(EvaluationError, match="export"):
        export_model(Dicty(), torch.randn(1, 3), tmp_path / "d.pt")


def test_artifact_loads_without_evoforge(tmp_path: Path) -> None:
    model = _fx_static_int8(_trained_ish(digits_cnn()))
    path = export_model(model, torch.randn(1, 1, 8, 8), tmp_path / "q.pt")
    code = (
        "import sys; sys.modules['evoforge'] = None\n"  # any import of evoforge now fails
        "import torch\n"
        f"m = torch.jit.load({str(path)!r})\n"
        "print(tuple(m(torch.zeros(3, 1, 8, 8)).shape))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("(3, 10)")
