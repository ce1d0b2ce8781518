"""int8 quantization with torch.ao's CPU kernels (x86 / fbgemm engine).

``dynamic`` quantizes Linear weights and computes activation scales on the fly; ``static``
calibrates activation ranges on the calibration split; ``qat`` trains with fake-quant modules and
then converts. Static and QAT use FX graph mode (works on residual adds and BN without any
QuantStub in the model); when FX tracing fails they fall back to eager mode, where every
quantizable Conv/Linear (fused with the BN/ReLU that directly consumes its output) is wrapped in
its own QuantStub/DeQuantStub pair. The result is CPU-only, takes float input, and exports with
``torch.jit.trace`` / ``torch.jit.script``.

torch.ao prints a DeprecationWarning on every entry point; only that category is silenced.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import torch
import torch.ao.quantization as tq
from torch import nn
from torch.ao.nn.intrinsic.modules.fused import _FusedModule
from torch.ao.quantization import quantize_fx

from evoforge.compression.genome import TORCH_AO_MODES, Stage
from evoforge.compression.stages import STAGES, StageContext
from evoforge.errors import ConfigError
from evoforge.hostlock import compute_step
from evoforge.workload.inputs import call_model, leaves, to_tensors
from evoforge.workload.training import train

ENGINE = "x86"
_ACT_MAX = 127  # quint8 activations in [0, 127]: fbgemm's "reduce_range", avoids overflow without VNNI
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN_AFTER = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d, nn.Linear: nn.BatchNorm1d}
_FUSABLE = {
    chain
    for layer, bn in _BN_AFTER.items()
    for chain in ((layer, bn), (layer, nn.ReLU)) + (() if layer is nn.Linear else ((layer, bn, nn.ReLU),))
}


@contextmanager
def _ao() -> Iterator[None]:
    """Run torch.ao calls on the x86 engine with their DeprecationWarnings (only those) silenced."""
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.backends.quantized.engine = ENGINE
        try:
            yield
        finally:
            torch.backends.quantized.engine = previous


def static_qconfig(per_channel: bool) -> tq.QConfig:
    """Histogram activation observer (7-bit range, safe on CPUs without VNNI) + symmetric int8 weights."""
    weight = (
        tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        if per_channel
        else tq.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    )
    return tq.QConfig(activation=tq.HistogramObserver.with_args(quant_min=0, quant_max=_ACT_MAX), weight=weight)


def qat_qconfig(per_channel: bool) -> tq.QConfig:
    """Moving-average fake-quant for activations (7-bit range) and symmetric int8 weights."""
    activation = tq.FusedMovingAvgObsFakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver, quant_min=0, quant_max=_ACT_MAX
    )
    weight = tq.default_fused_per_channel_wt_fake_quant if per_channel else tq.default_fused_wt_fake_quant
    return tq.QConfig(activation=activation, weight=weight)


def _calibrate(model: nn.Module, ctx: StageContext) -> None:
    with torch.no_grad():
        for x, _ in ctx.data.calib.batches(ctx.batch_size):
            with compute_step():
                call_model(model, x)


def _dynamic(model: nn.Module, stage: Stage, ctx: StageContext) -> nn.Module:
    qconfig = tq.per_channel_dynamic_qconfig if stage["per_channel"] else tq.default_dynamic_qconfig
    kept = set(ctx.protected) if stage["keep_float_edges"] else set()
    spec = {name: qconfig for name, m in model.named_modules() if type(m) is nn.Linear and name not in kept}
    with _ao():
        return cast(nn.Module, tq.quantize_dynamic(model.eval(), qconfig_spec=spec, dtype=torch.qint8))


def _fx(model: nn.Module, stage: Stage, ctx: StageContext, qat: bool) -> nn.Module:
    per_channel = stage["per_channel"]
    example = tuple(leaves(to_tensors(ctx.example_input)))
    with _ao():
        if qat:
            mapping = tq.get_default_qat_qconfig_mapping(ENGINE).set_global(qat_qconfig(per_channel))
        else:
            mapping = tq.get_default_qconfig_mapping(ENGINE).set_global(static_qconfig(per_channel))
        for table in (nn.Embedding, nn.EmbeddingBag):  # lookup tables stay float (their int8 needs other qparams)
            mapping.set_object_type(table, None)
        if stage["keep_float_edges"]:
            for name in ctx.protected:
                mapping.set_module_name(name, None)
        if qat:
            prepared = quantize_fx.prepare_qat_fx(model.train(), mapping, example)
        else:
            prepared = quantize_fx.prepare_fx(model.eval(), mapping, example)
    _observe(prepared, stage, ctx, qat)
    with _ao():
        return quantize_fx.convert_fx(prepared.eval())


def _observe(prepared: nn.Module, stage: Stage, ctx: StageContext, qat: bool) -> None:
    """Collect activation ranges: QAT trains ``epochs`` epochs with fake quantization (and only
    calibrates when ``epochs`` is 0); static calibrates on the calibration split."""
    if qat and stage["epochs"] > 0:
        with _ao():
            train(prepared, ctx.data, ctx.training, epochs=stage["epochs"], seed=ctx.seed, batch_size=ctx.batch_size)
    else:
        prepared.eval()
        with _ao():
            _calibrate(prepared, ctx)


def _fusion_chains(model: nn.Module, example: Any) -> list[list[str]]:
    """Conv/Linear -> BN -> ReLU runs that torch.ao can fuse, found from one traced forward pass:
    each link consumes exactly the previous link's output tensor and every module runs once."""
    names = {m: n for n, m in model.named_modules()}
    calls: list[tuple[str, nn.Module, object, object]] = []

    def record(module: nn.Module, args: tuple[object, ...], output: object) -> None:
        calls.append((names[module], module, args[0] if args else None, output))

    handles = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            call_model(model, example)
    finally:
        for handle in handles:
            handle.remove()
    counts: dict[str, int] = {}
    for name, *_ in calls:
        counts[name] = counts.get(name, 0) + 1
    chains: list[list[str]] = []
    for i, (name, module, _, out) in enumerate(calls):
        if type(module) not in _WEIGHTED or counts[name] != 1:
            continue
        chain, types = [name], [type(module)]
        for next_name, next_module, next_in, next_out in calls[i + 1 : i + 3]:
            candidate = types + [type(next_module)]
            if next_in is not out or counts[next_name] != 1 or tuple(candidate) not in _FUSABLE:
                break
            chain.append(next_name)
            types, out = candidate, next_out
        if len(chain) > 1:
            chains.append(chain)
    return chains


def _eager(model: nn.Module, stage: Stage, ctx: StageContext, qat: bool) -> nn.Module:
    example = to_tensors(ctx.example_input)
    kept = set(ctx.protected) if stage["keep_float_edges"] else set()
    chains = [chain for chain in _fusion_chains(model.eval(), example) if chain[0] not in kept]
    qconfig = qat_qconfig(stage["per_channel"]) if qat else static_qconfig(stage["per_channel"])
    with _ao():
        if chains:
            fuse = tq.fuse_modules_qat if qat else tq.fuse_modules
            model = fuse(model.train(qat), chains)
        targets: list[str] = []
        for name, m in model.named_modules():
            inside = any(name.startswith(t + ".") for t in targets)  # the layers inside a fused module
            fused = isinstance(m, _FusedModule) and type(m[0]) in _WEIGHTED
            if not inside and (type(m) in _WEIGHTED or fused) and name not in kept:
                targets.append(name)
        for name in targets:
            parent, _, child = name.rpartition(".")
            island = nn.Sequential(tq.QuantStub(), model.get_submodule(name), tq.DeQuantStub())  # a quantized island
            setattr(island, "qconfig", qconfig)  # noqa: B010  (nn.Module.__setattr__ is typed for tensors/modules)
            setattr(model.get_submodule(parent), child, island)
        prepared = tq.prepare_qat(model.train(), inplace=False) if qat else tq.prepare(model.eval(), inplace=False)
    _observe(prepared, stage, ctx, qat)
    with _ao():
        return cast(nn.Module, tq.convert(prepared.eval(), inplace=False))


@STAGES.register("quantize")
def quantize(model: nn.Module, stage: Stage, ctx: StageContext) -> nn.Module:
    """int8-quantize ``model`` per ``stage`` (mode, per_channel, keep_float_edges, epochs for qat).

    ``keep_float_edges`` leaves the layers in ``ctx.protected`` in float. Quantized kernels run on
    CPU only, so the model (and any QAT training) moves to CPU whatever ``ctx.device`` is.
    """
    if stage["mode"] not in TORCH_AO_MODES:
        raise ConfigError(f"int8 mode {stage['mode']!r} has no torch.ao form (its modes: {', '.join(TORCH_AO_MODES)}); "
                          "a runtime that quantizes at export (such as inductor) applies it")
    model = model.cpu()
    if stage["mode"] == "dynamic":
        return _dynamic(model, stage, ctx)
    qat = stage["mode"] == "qat"
    if isinstance(ctx.example_input, Mapping):  # FX takes positional example inputs only
        return _eager(model, stage, ctx, qat)
    try:
        with _ao():
            torch.fx.symbolic_trace(model)
    except (torch.fx.proxy.TraceError, TypeError, NotImplementedError, RuntimeError):
        return _eager(model, stage, ctx, qat)
    return _fx(model, stage, ctx, qat)
