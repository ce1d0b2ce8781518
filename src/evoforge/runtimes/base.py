"""The `Runtime` contract and its registry."""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evoforge.errors import ConfigError, EvaluationError
from evoforge.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from evoforge.workload.inputs import InputSpec


COMPARE_RUNTIMES = ("fast", "all", "none")
"""Which runtimes a run times the unmodified model in when it starts, to say what a user would get
without evoforge: ``all``; ``fast``, all but those that compile native code to get there
(Inductor, torch.compile: tens of seconds, minutes on a large model); ``none``."""


def check_compare_runtimes(value: str) -> str:
    """``value`` when it is one of `COMPARE_RUNTIMES`, else a `ConfigError` naming them."""
    if value not in COMPARE_RUNTIMES:
        raise ConfigError(f"compare_runtimes {value!r} is not one of: {', '.join(COMPARE_RUNTIMES)}")
    return value


INT8_WEIGHT_BITS = ("auto", 7, 8)
"""How wide int8 weights are in runtimes that `Runtime.narrows_int8_weights`: ``auto`` follows the
evaluating processor (7 bits where `evoforge.machine.int8_products_saturate`, else 8); 7 gives
files that keep their accuracy on any x86 processor, 8 the full range where the deployment
processor has VNNI."""


def check_int8_weight_bits(value: Any) -> str | int:
    """``value`` as one of `INT8_WEIGHT_BITS` (``"7"`` from a command line or a config file is 7),
    else a `ConfigError` naming them."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("7", "8"):
        return int(text)
    raise ConfigError(f"int8_weight_bits {value!r} is not one of: auto, 7, 8")


@dataclasses.dataclass(frozen=True)
class QuantSettings:
    """A reduced-precision request for a runtime that applies it at export: ``mode`` (one of the
    runtime's `Runtime.quant_modes`: an int8 mode, or ``bf16``), per-channel int8 weights or not,
    whether the first and last weighted layers stay float (``keep_float_edges``, int8 only), and
    for ``static`` the calibration batches (each a tuple of positional tensors, as the artifact
    takes them). ``bf16`` computes in bfloat16: weights and activations, float32 in and out."""

    mode: str
    per_channel: bool = True
    calibration: Sequence[tuple[Any, ...]] = ()
    keep_float_edges: bool = False
    train: Callable[[nn.Module], object] | None = None
    """For ``qat``: trains the fake-quantized model in place (it takes the model's own input
    structure, like the float model); None calibrates it on ``calibration`` instead."""
    weight_bits: int | None = None
    """7 or 8: the int8 weight width in runtimes that `Runtime.narrows_int8_weights` (others
    ignore it); None: the evaluating processor's (`int8_weight_bits_here`)."""

    def int8_weight_bits(self) -> int:
        """The width int8 weights take here: `weight_bits`, or this processor's need."""
        return self.weight_bits or int8_weight_bits_here()


def int8_weight_bits_here() -> int:
    """The int8 weight width that keeps this processor's int8 kernels exact: 7 where
    `evoforge.machine.int8_products_saturate`, else 8."""
    from evoforge import machine

    return 7 if machine.int8_products_saturate() else 8


class Runtime(ABC):
    """Export a model to this runtime's artifact, load it, report its size.

    ``export`` takes a float ``nn.Module`` and an example input of any structure (a batch of at
    least one row); the artifact takes the inputs as positional tensors in
    `evoforge.workload.inputs.InputSpec` order, returns the output tensor and keeps the batch
    dimension dynamic. ``export`` raises `EvaluationError` when the model does not export or the
    artifact does not reproduce it (float) or gives non-finite or misshapen outputs (int8, bf16).
    """

    name: ClassVar[str]
    package: ClassVar[str] = "torch"
    """The distribution whose version is the runtime's version."""
    artifact_name: ClassVar[str]
    """File name of the artifact inside a candidate's directory (``model.onnx``, ...)."""
    quant_modes: ClassVar[tuple[str, ...]] = ()
    """The modes `export` accepts in ``quant`` (the runtime converts the float model): int8 modes
    and ``bf16``."""
    drafts: ClassVar[bool] = False
    """True when `export` has a faster ``draft`` path (screening evaluations use it)."""
    artifact_format: ClassVar[str | None] = None
    """Runtimes that load one another's artifacts as they are share a format name (``onnx``)."""
    export_compiles: ClassVar[bool] = False
    """True when `export` builds native code (tens of seconds per model): a run's fp32 comparison
    across runtimes leaves such a runtime out unless asked (``compare_runtimes="all"``)."""
    takes_torch_int8: ClassVar[bool] = False
    """True when `export` also takes models torch.ao has already quantized (the compress
    ``quantize`` stage's own int8); such a runtime offers every mode of that stage."""
    narrows_int8_weights: ClassVar[bool] = False
    """True when `export` takes the int8 weight width from `QuantSettings.weight_bits` (by default 7
    bits on processors whose int8 kernels would saturate with 8, `int8_weight_bits_here`)."""

    @abstractmethod
    def export(self, model: nn.Module, example_input: Any, path: str | os.PathLike[str], *,
               quant: QuantSettings | None = None, draft: bool = False) -> Path:
        """Write the artifact of ``model`` to ``path``; returns ``path``. A ``draft`` artifact is
        for a screening evaluation (`evoforge.search.fidelity`): a runtime may write it by a
        faster, less general path (`drafts` says whether it has one), so that its size and
        latency stand in for the final artifact's; it is never kept as a member. Runtimes
        without such a path ignore it."""

    @abstractmethod
    def load(self, path: str | os.PathLike[str], *, threads: int | None = None) -> nn.Module:
        """The artifact as an eval-mode module taking positional tensors; ``threads`` fixes the
        runtime's intra-op threads (None: the runtime's default)."""

    @abstractmethod
    def load_snippet(self, path: str | os.PathLike[str]) -> str:
        """How a user loads the artifact without evoforge (one line of Python)."""

    def check_export(self, model: nn.Module, example_input: Any, *, quant: QuantSettings | None = None) -> None:
        """Raise `EvaluationError` (or `ConfigError`) when ``model`` would not export with
        ``quant``: what the capability probe calls for every stage kind and quantize mode. The
        default exports to a scratch file; a runtime whose compile step is slow may check less."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="evoforge-check-") as tmp:
            self.export(model, example_input, Path(tmp) / self.artifact_name, quant=quant)

    def size_bytes(self, path: str | os.PathLike[str]) -> int:
        """Bytes of the deployable artifact."""
        return Path(path).stat().st_size

    def check_quant(self, quant: QuantSettings | None) -> None:
        """Raise `ConfigError` naming the valid modes when ``quant`` asks for one this runtime lacks."""
        if quant is None:
            return
        if quant.mode not in self.quant_modes:
            valid = ", ".join(self.quant_modes) or "none (int8 is applied to the model before export)"
            raise ConfigError(f"quantize mode {quant.mode!r} is not available on runtime {self.name!r}; its modes: {valid}")
        if quant.mode == "static" and not quant.calibration:
            raise ConfigError(f"static int8 on runtime {self.name!r} needs calibration batches; give QuantSettings(calibration=...)")
        if quant.mode == "qat" and quant.train is None and not quant.calibration:
            raise ConfigError(f"qat int8 on runtime {self.name!r} needs a trainer or calibration batches; give QuantSettings(train=...)")


CHECK_ATOL = 1e-4
CHECK_RTOL = 1e-3
"""How closely a float artifact must reproduce its model on the export example."""


def export_args(example_input: Any) -> tuple[InputSpec, tuple[torch.Tensor, ...]]:
    """The input spec of ``example_input`` and its positional tensors, with a batch of one row
    doubled: torch.export treats a dimension of size 1 as static, two rows keep the batch dynamic."""
    import torch

    from evoforge.workload.inputs import InputSpec, to_tensors

    spec = InputSpec.of(example_input)
    args = tuple(torch.cat([t, t]) if t.shape[0] == 1 else t for t in spec.flatten(to_tensors(example_input)))
    return spec, args


def adapted(model: nn.Module, example_input: Any) -> tuple[InputSpec, tuple[torch.Tensor, ...], nn.Module]:
    """The export view of ``model``: its input spec, the positional export arguments
    (`export_args`) and an eval-mode copy taking them (`evoforge.workload.inputs.ModelAdapter`)."""
    import copy

    from evoforge.workload.inputs import ModelAdapter

    spec, args = export_args(example_input)
    return spec, args, ModelAdapter(copy.deepcopy(model), spec).eval()


def check_artifact_output(got: torch.Tensor, expected: torch.Tensor, quant: QuantSettings | None, what: str) -> None:
    """Float artifacts must reproduce the model; int8 and bf16 ones must keep its shape and stay
    finite (how far they move the outputs is the quality objective's business, measured on data).
    Raises `EvaluationError` naming ``what`` (the artifact kind)."""
    import torch

    got, expected = got.float(), expected.float()
    if got.shape != expected.shape:
        raise EvaluationError(f"exported {what} output has shape {tuple(got.shape)}, the model's {tuple(expected.shape)}")
    if quant is not None:
        if not bool(torch.isfinite(got).all()):
            raise EvaluationError(f"{quant.mode} {what} output holds NaN or infinite values")
        return
    if not torch.allclose(got, expected, atol=CHECK_ATOL, rtol=CHECK_RTOL):
        raise EvaluationError(f"exported {what} output differs from the model by up to {float((got - expected).abs().max()):.3g}")


RUNTIMES: Registry[type[Runtime]] = Registry("runtime")


def drop_archive_members(path: Path, drop: Callable[[str], bool]) -> None:
    """Rewrite the zip archive at ``path`` without the members whose names ``drop`` accepts; the
    others keep their names, order and compression. Written beside ``path``, then moved over it."""
    import zipfile

    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(scratch, "w") as kept:
        for info in source.infolist():
            if not drop(info.filename):
                kept.writestr(info, source.read(info.filename))
    scratch.replace(path)


def get_runtime(name: str) -> Runtime:
    """A fresh instance of the runtime registered as ``name`` (unknown names list the valid ones)."""
    return RUNTIMES[name]()


def installed_runtimes() -> list[Runtime]:
    """A fresh instance of each registered runtime whose packages are installed, in registry order."""
    found = []
    for cls in RUNTIMES.values():
        try:
            found.append(cls())
        except ConfigError:  # not installed
            continue
    return found


def loads_artifacts_of(runtime: Runtime, other: Runtime) -> bool:
    """True when ``runtime`` loads ``other``'s artifacts as they are (the same
    `Runtime.artifact_format`): OpenVINO and ONNX Runtime load each other's files."""
    return runtime.artifact_format is not None and runtime.artifact_format == other.artifact_format
