"""Exporting PyTorch models to programs IREE compiles."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("iree.compiler")

from evoforge.errors import ConfigError  # noqa: E402
from evoforge.mlir import program as program_module  # noqa: E402
from evoforge.mlir.iree_runner import compile_program, run_program  # noqa: E402
from evoforge.mlir.program import from_module, from_torch, lowering_problem  # noqa: E402
from evoforge.mlir.window_ops import ExactWindow, exact_window_inputs  # noqa: E402


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


def _matches_torch(model: torch.nn.Module, program, x, worker) -> None:  # type: ignore[no-untyped-def]
    out = run_program(compile_program(program.text, input_type=program.input_type), [[x.numpy()]], worker=worker,
                      function=program.entry)[0][0]
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_unit_output_strided_convs_read_an_exact_window_with_the_same_outputs() -> None:
    torch.manual_seed(0)
    model = LastStage().eval()
    x = torch.randn(3, 4, 2, 2)
    fixed = exact_window_inputs(model, (x,))
    assert fixed is not model and isinstance(model.down[0], torch.nn.Conv2d)  # the user's model is untouched
    window, conv = fixed.down[0]
    assert isinstance(window, ExactWindow) and conv.padding == (0, 0)
    assert window.pads == ((1, 0), (1, 0)) and window.keep == (None, None)  # padded to exactly the 3x3 window
    assert fixed.tall[0].pads == ((1, 0), (0, 0)) and isinstance(fixed.keep, torch.nn.Conv2d)
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), model(x))
    wider = torch.randn(3, 4, 8, 8)  # at 8x8 nothing has a single output: the model is returned as is
    assert exact_window_inputs(model, (wider,)) is model


class SmallMaps(torch.nn.Module):
    """Strided window ops with one output on small maps, each of which IREE 3.13 rejects as
    exported: SqueezeNet's ceil-mode max pooling on 3x3, a padded max pooling on 2x2, unpadded
    convolution and average pooling on 4x4 (the window must be cut), a 1-D max pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.ceil_pool = torch.nn.MaxPool2d(3, 2, ceil_mode=True)
        self.padded_pool = torch.nn.MaxPool2d(3, 2, padding=1)
        self.conv = torch.nn.Conv2d(4, 2, 3, stride=2)
        self.avg = torch.nn.AvgPool2d(3, 2)
        self.pool1d = torch.nn.MaxPool1d(3, 2)

    def forward(self, x):  # type: ignore[no-untyped-def]
        parts = [self.ceil_pool(x[:, :, :3, :3]), self.padded_pool(x[:, :, :2, :2]), self.conv(x), self.avg(x),
                 self.pool1d(x[:, :, 0, :])]
        return torch.cat([p.flatten(1) for p in parts], dim=1)


def test_single_output_poolings_and_unpadded_convs_read_an_exact_window(worker) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = SmallMaps().eval()
    x = torch.randn(3, 4, 4, 4) - 2.0  # negative: a max pooling that read zeros for its padding would differ
    fixed = exact_window_inputs(model, (x,))
    assert fixed.conv[0].keep == (3, 3) and fixed.conv[0].pads == ((0, 0), (0, 0))  # the 4th row and column are never read
    assert fixed.padded_pool[0].fill == float("-inf") and fixed.ceil_pool[1].ceil_mode is False
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), model(x))
    _matches_torch(model, from_torch(model, x), x, worker)


def test_an_average_pooling_that_does_not_count_its_padding_is_left_as_it_is() -> None:
    model = torch.nn.Sequential(torch.nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)).eval()
    assert exact_window_inputs(model, (torch.randn(1, 2, 2, 2),)) is model  # explicit zeros would change its divisor


def test_a_resnet_style_last_stage_compiles_and_matches_torch(worker) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = LastStage().eval()
    x = torch.randn(3, 4, 2, 2)
    _matches_torch(model, from_torch(model, x), x, worker)  # IREE 3.13 rejects the unpadded form


class BoolMask(torch.nn.Module):
    """``a & b`` on bool tensors, as transformers builds its attention masks: iree-turbine exports
    it as ``torch.aten.__and__.Tensor``, which IREE 3.13 cannot lower."""

    def forward(self, x):  # type: ignore[no-untyped-def]
        keep = (x > -0.5) & (x < 0.5)
        return torch.where(keep, x, torch.zeros_like(x)).sum(dim=1)


class GRUHead(torch.nn.Module):
    """A GRU: iree-turbine keeps ``aten.gru.input`` whole, and IREE has no lowering for it."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(4, 6, batch_first=True)
        self.head = torch.nn.Linear(6, 3)

    def forward(self, x):  # type: ignore[no-untyped-def]
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def test_a_bool_and_is_loaded_as_the_bitwise_and_iree_lowers(worker) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model, x = BoolMask().eval(), torch.randn(8, 5)
    program, export = from_module(model, x)
    assert export == {"exporter": "iree-turbine"}
    assert "__and__" not in program.text and "torch.aten.bitwise_and.Tensor" in program.text
    assert lowering_problem(program) is None
    _matches_torch(model, program, x, worker)


def test_a_model_iree_cannot_lower_as_exported_goes_through_onnx(worker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from evoforge.layout import RunLayout
    from evoforge.mlir.domain import EvolveDomain
    from evoforge.mlir.sources import prepare_from_module, read_meta

    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model, x = GRUHead().eval(), torch.randn(8, 7, 4)
    problem = lowering_problem(from_torch(model, x))
    assert problem is not None and "gru" in problem  # what the fallback is for
    program, export = from_module(model, x)
    assert export["exporter"] == "onnx" and export["onnx_exporter"] == "torchscript"  # the faster exporter first
    assert "gru" in export["exporter_reason"] and lowering_problem(program) is None
    _matches_torch(model, program, x, worker)
    linalg, export = from_module(model, x, level="linalg")
    assert export["exporter"] == "onnx" and linalg.level == "linalg"
    layout = RunLayout(tmp_path)
    prepare_from_module(model, x, layout.program, level="torch", data=None)
    meta = read_meta(layout.program)  # the run records which route made its program, and why
    assert meta["exporter"] == "onnx" and meta["exporter_reason"].startswith("IREE cannot lower iree-turbine's export: ")
    domain = EvolveDomain()
    domain.attach(layout)
    assert (f"program exported through ONNX by torch's torchscript exporter ({meta['exporter_reason']})"
            in domain.headline_notes({}))  # show says so


def test_when_no_export_lowers_the_error_names_each_routes_reason(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def no_onnx(module, example_input, exporter):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"Exporting the operator 'aten::gru' to ONNX is not supported ({exporter})")

    monkeypatch.setattr(program_module, "_through_onnx", no_onnx)
    with pytest.raises(ConfigError, match=r"by any export route \(iree-turbine: .*gru.*; ONNX \(torchscript\): Exporting .* "
                                          r"\(torchscript\); ONNX \(dynamo\): Exporting .* \(dynamo\)\); replace those ops"):
        from_module(GRUHead().eval(), torch.randn(8, 7, 4))


def test_when_the_torchscript_exporter_fails_the_dynamo_exporter_takes_the_model(worker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """torch's TorchScript-based ONNX exporter is deprecated; when it fails or is gone, the model
    still gets through ONNX, by the dynamo exporter."""
    pytest.importorskip("onnxscript")
    through_onnx = program_module._through_onnx

    def torchscript_gone(module, example_input, exporter):  # type: ignore[no-untyped-def]
        if exporter == "torchscript":
            raise RuntimeError("the TorchScript-based ONNX exporter was removed")
        return through_onnx(module, example_input, exporter)

    monkeypatch.setattr(program_module, "_through_onnx", torchscript_gone)
    torch.manual_seed(0)
    model, x = GRUHead().eval(), torch.randn(8, 7, 4)
    program, export = from_module(model, x)
    assert export["exporter"] == "onnx" and export["onnx_exporter"] == "dynamo"
    _matches_torch(model, program, x, worker)


@pytest.mark.iree
def test_an_original_no_better_than_a_constant_is_flagged_at_the_start_and_in_show(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    from evoforge.layout import RunLayout
    from evoforge.mlir.api import prepare_program
    from evoforge.mlir.domain import EvolveDomain

    torch.manual_seed(0)
    untrained, learnt = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    torch.nn.init.zeros_(untrained.weight)  # the same scores for every example: a constant prediction
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    notes = {}
    with torch.no_grad():
        labelled = learnt(torch.from_numpy(x)).argmax(1).numpy()  # the labels ``learnt`` predicts
    for name, model, labels in (("untrained", untrained, np.arange(64) % 3), ("learnt", learnt, labelled)):
        np.savez(tmp_path / f"{name}.npz", x_val=x, y_val=labels, x_test=x, y_test=labels)
        layout = RunLayout(tmp_path / name)
        prepare_program(model, layout, data=str(tmp_path / f"{name}.npz"), batch_size=8)
        domain = EvolveDomain()
        domain.attach(layout)
        caplog.clear()
        with caplog.at_level("WARNING", logger="evoforge"):
            domain.prepare()
        notes[name] = ([r.getMessage() for r in caplog.records if r.name == "evoforge"], domain.headline_notes({}))
    warned, headline = notes["untrained"]
    assert len(warned) == 1 and warned[0].startswith("the original program's validation accuracy 0.3")
    assert headline[0] == "WARNING: " + warned[0]
    assert notes["learnt"][0] == [] and not any(n.startswith("WARNING") for n in notes["learnt"][1])  # labels it predicts
