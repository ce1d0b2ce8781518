"""TorchInductor, ahead of time: the model captured by ``torch.export`` and compiled by
AOTInductor, with freezing on (weights become constants, batch norm folds into convolutions,
int8 weights are prepacked for oneDNN), into one package file ``model.pt2``: a zip holding a
shared library with the weights inside. ``torch._inductor.aoti_load_package`` runs it without
the model's Python code. The library is built by the host's C++ compiler for the host CPU
(``-march=native``): rebuild it on the machine it serves. It carries about 0.4 MB of code besides
the weights, which dominates the size of very small models. The library is built without debug
line tables and the package without the generated C++ sources: neither is needed to load or run
it, and both name the build's paths (together 1.1-1.4 MB per package).

int8 comes from torchao, never from ``torch.ao.quantization``:

- ``static``, ``dynamic`` and ``qat`` are the PT2E flow with ``X86InductorQuantizer``: uint8
  activations and int8 weights (per channel, or per tensor), ``static`` calibrated on the
  calibration batches, ``dynamic`` with activation scales computed per call, ``qat`` trained
  with fake quantization through `QuantSettings.train` before the conversion;
- ``weight_only`` stores the weights of ``nn.Linear`` layers in int8 (torchao's
  ``Int8WeightOnlyConfig``, one scale per output row) and computes in float: a smaller file,
  and faster where the Linear layers are memory-bound (small batches).

``bf16`` is not int8: the model is converted to bfloat16 (weights and arithmetic, float32 in and
out, `Bf16Model`) before the capture.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evoforge.errors import EvaluationError
from evoforge.quiet import quiet_torch_internals
from evoforge.runtimes.base import RUNTIMES, QuantSettings, Runtime, adapted, check_artifact_output, drop_archive_members
from evoforge.workload.inputs import Bf16Model, ExportedModel, InputSpec, ModelAdapter

_MAX_BATCH = 1 << 16
# Freezing on; no line tables: torch builds the library with ``-g1`` by default, 1.1 MB of debug
# sections (with the build's paths) in every package, which nothing that loads or runs it needs.
_PACKAGE_CONFIG = {"freezing": True, "aot_inductor.enable_line_tables": False}
_EDGE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


class AotiModule(nn.Module):
    """An AOTInductor package as a module: positional tensors in, the output tensor out."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        with quiet_torch_internals():
            self.runner = torch._inductor.aoti_load_package(str(path))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.runner(*inputs)  # type: ignore[no-any-return]


@RUNTIMES.register("inductor")
class InductorRuntime(Runtime):
    """AOTInductor package (torch.export + TorchInductor, freezing on); int8 from torchao:
    PT2E ``static``, ``dynamic`` and ``qat``, and ``weight_only`` for Linear layers; and ``bf16``."""

    name = "inductor"
    artifact_name = "model.pt2"
    export_compiles = True
    quant_modes = ("dynamic", "static", "qat", "weight_only", "bf16")

    def export(self, model: nn.Module, example_input: Any, path: str | os.PathLike[str], *,
               quant: QuantSettings | None = None, draft: bool = False) -> Path:
        path = Path(path)
        self._build(model, example_input, quant, path)
        return path

    def check_export(self, model: nn.Module, example_input: Any, *, quant: QuantSettings | None = None) -> None:
        """Capture and quantize as `export` does and run the captured program, without the
        C++ compile (tens of seconds per model): what fails is in the capture and int8 steps."""
        self._build(model, example_input, quant, None)

    def _build(self, model: nn.Module, example_input: Any, quant: QuantSettings | None, path: Path | None) -> None:
        """Capture (and quantize) ``model``; compile the package to ``path`` unless it is None,
        else run the captured program. Checks the outputs either way."""
        self.check_quant(quant)
        spec, args, module = adapted(model, example_input)
        try:
            with torch.no_grad():
                expected = module(*args)
            with quiet_torch_internals():
                program = _capture(module, args, spec, quant)
                if path is None:
                    with torch.no_grad():
                        got = program.module()(*args)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    torch._inductor.aoti_compile_and_package(program, package_path=str(path), inductor_configs=_PACKAGE_CONFIG)
                    drop_archive_members(path, lambda name: name.endswith(".cpp"))
            if path is not None:
                compiled = AotiModule(path)
                with torch.no_grad():
                    got = compiled(*args)
                    if compiled(*(t[:1] for t in args)).shape[0] != 1:
                        raise EvaluationError("the AOTInductor package does not keep the batch dimension dynamic")
        except EvaluationError:
            raise
        except Exception as exc:
            raise EvaluationError(f"Inductor export of {type(model).__name__} failed: {type(exc).__name__}: {_summary(exc)}") from exc
        check_artifact_output(got, expected, quant, "AOTInductor package" if path is not None else "captured program")

    def load(self, path: str | os.PathLike[str], *, threads: int | None = None) -> nn.Module:
        if threads is not None:
            torch.set_num_threads(threads)  # the compiled kernels use torch's (OpenMP) thread pool
        return AotiModule(path).eval()

    def load_snippet(self, path: str | os.PathLike[str]) -> str:
        return f"torch._inductor.aoti_load_package({str(path)!r})"


def _capture(module: nn.Module, args: tuple[torch.Tensor, ...], spec: InputSpec, quant: QuantSettings | None) -> Any:
    """The `torch.export.ExportedProgram` to compile: ``module`` as is, or converted per ``quant``."""
    if quant is None:
        return _export(module, args)
    if quant.mode == "bf16":
        return _export(Bf16Model(module), args)
    float_layers = _edge_layers(module, args) if quant.keep_float_edges else ()
    if quant.mode == "weight_only":
        _weight_only(module, float_layers)
        return _export(module, args)
    return _export(_pt2e(module, args, spec, quant, float_layers), args)


def _export(module: nn.Module, args: tuple[torch.Tensor, ...]) -> Any:
    """``torch.export`` of ``module`` on ``args`` with a dynamic batch dimension."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=_MAX_BATCH)
    shapes: tuple[Any, ...] = tuple({0: batch} for _ in args)
    if isinstance(module, (ModelAdapter, Bf16Model)):
        shapes = (shapes,)  # one entry: ModelAdapter and Bf16Model take *inputs (a captured graph names each input)
    return torch.export.export(module, args, dynamic_shapes=shapes)


def _weight_only(module: nn.Module, float_layers: tuple[str, ...]) -> None:
    """Int8 Linear weights in place (torchao ``quantize_``); raises when no Linear qualifies."""
    quantize_, config = _torchao_weight_only()
    chosen = {name for name, m in module.named_modules() if isinstance(m, nn.Linear) and name not in float_layers}
    if not chosen:
        raise EvaluationError("weight_only int8 found no nn.Linear layer to quantize (the edges stay float)")
    quantize_(module, config(), filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn in chosen)


def _pt2e(module: nn.Module, args: tuple[torch.Tensor, ...], spec: InputSpec, quant: QuantSettings,
          float_layers: tuple[str, ...]) -> nn.Module:
    """``module`` through torchao's PT2E flow: captured, observed (calibrated, or trained for
    QAT), converted to quantize / dequantize ops that Inductor lowers to int8 kernels."""
    pt2e, xiq = _torchao_pt2e()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(_quantization_config(xiq, quant))
    for name in float_layers:
        quantizer.set_module_name_qconfig(name, None)
    qat = quant.mode == "qat"
    graph = _export(module.train(qat), args).module()
    prepared = pt2e.prepare_qat_pt2e(graph, quantizer) if qat else pt2e.prepare_pt2e(graph, quantizer)
    pt2e.allow_exported_model_train_eval(prepared)  # .train() / .eval() switch batch norm and dropout
    if qat and quant.train is not None:
        quant.train(ExportedModel(prepared, spec))
    else:  # static calibrates; dynamic observes one pass (its activation scales come per call)
        prepared.eval()
        with torch.no_grad():
            for batch in quant.calibration or [args]:
                prepared(*batch)
    prepared.eval()
    with torch.no_grad():
        return pt2e.convert_pt2e(prepared)  # type: ignore[no-any-return]


def _quantization_config(xiq: Any, quant: QuantSettings) -> Any:
    """X86InductorQuantizer's default config for the mode, with per-tensor weights when
    ``per_channel`` is off."""
    config = xiq.get_default_x86_inductor_quantization_config(is_qat=quant.mode == "qat", is_dynamic=quant.mode == "dynamic")
    if quant.per_channel:
        return config
    from torchao.quantization.pt2e import FusedMovingAvgObsFakeQuantize, MinMaxObserver, MovingAverageMinMaxObserver

    if quant.mode == "qat":
        observer = FusedMovingAvgObsFakeQuantize.with_args(observer=MovingAverageMinMaxObserver, eps=2**-12)
    else:
        observer = MinMaxObserver.with_args(eps=2**-12)
    weight = dataclasses.replace(config.weight, qscheme=torch.per_tensor_symmetric, ch_axis=None, observer_or_fake_quant_ctr=observer)
    return dataclasses.replace(config, weight=weight)


def _edge_layers(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[str, ...]:
    """Names (in ``module``) of the first and last convolution or Linear layers its forward
    pass runs: the layers ``keep_float_edges`` keeps in float."""
    names = {m: n for n, m in module.named_modules()}
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda m, _a, _o: order.append(names[m])) for m in module.modules() if isinstance(m, _EDGE_TYPES)]
    try:
        with torch.no_grad():
            module(*args)
    finally:
        for hook in hooks:
            hook.remove()
    return tuple(dict.fromkeys(order[:1] + order[-1:]))


def _torchao_pt2e() -> tuple[Any, Any]:
    """torchao's PT2E entry points and its x86 Inductor quantizer module."""
    with quiet_torch_internals():
        import torchao.quantization.pt2e as pt2e_utils
        import torchao.quantization.pt2e.quantize_pt2e as quantize_pt2e
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    class _Pt2e:
        prepare_pt2e = staticmethod(quantize_pt2e.prepare_pt2e)
        prepare_qat_pt2e = staticmethod(quantize_pt2e.prepare_qat_pt2e)
        convert_pt2e = staticmethod(quantize_pt2e.convert_pt2e)
        allow_exported_model_train_eval = staticmethod(pt2e_utils.allow_exported_model_train_eval)

    return _Pt2e, xiq


def _torchao_weight_only() -> tuple[Callable[..., Any], Callable[[], Any]]:
    with quiet_torch_internals():
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    return quantize_, Int8WeightOnlyConfig


def _summary(exc: Exception) -> str:
    """The first line of a compiler error (Inductor's messages run for pages)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""
