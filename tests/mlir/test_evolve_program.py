"""Exporting PyTorch models to programs IREE compiles."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("iree.compiler")

from evoforge.mlir.iree_runner import compile_program, run_program  # noqa: E402
from evoforge.mlir.program import from_torch, pad_unit_output_convs  # noqa: E402


class LastStage(torch.nn.Module):
    """What a ResNet's last stage meets at 32x32: a 3x3 stride-2 conv on a 2x2 map (one output
    row and column), beside an ordinary conv that must stay as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.keep = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.down = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), torch.nn.ReLU())
        self.tall = torch.nn.Conv2d(4, 2, (3, 1), stride=(2, 1), padding=(1, 0))  # one output row, two columns

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = self.keep(x)
        return torch.cat([self.down(y).flatten(1), self.tall(y).flatten(1)], dim=1)


def test_unit_output_strided_convs_pad_explicitly_with_the_same_outputs() -> None:
    torch.manual_seed(0)
    model = LastStage().eval()
    x = torch.randn(3, 4, 2, 2)
    fixed = pad_unit_output_convs(model, (x,))
    assert fixed is not model and isinstance(model.down[0], torch.nn.Conv2d)  # the user's model is untouched
    assert isinstance(fixed.down[0], torch.nn.Sequential) and fixed.down[0][1].padding == (0, 0)
    assert fixed.down[0][0].padding == (1, 0, 1, 0)  # left, right, top, bottom: exactly the 3x3 window
    assert fixed.tall[0].padding == (0, 0, 1, 0) and fixed.keep is not None and isinstance(fixed.keep, torch.nn.Conv2d)
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), model(x))
    wider = torch.randn(3, 4, 8, 8)  # at 8x8 nothing has a single output: the model is returned as is
    assert pad_unit_output_convs(model, (wider,)) is model


def test_a_resnet_style_last_stage_compiles_and_matches_torch(worker) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = LastStage().eval()
    x = torch.randn(3, 4, 2, 2)
    program = from_torch(model, x)
    vmfb = compile_program(program.text)  # IREE 3.13 rejects the unpadded form
    out = run_program(vmfb, [[x.numpy()]], worker=worker, function=program.entry)[0][0]
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)
