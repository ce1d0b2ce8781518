"""The `Runtime` contract and its registry."""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evoforge.errors import ConfigError
from evoforge.registry import Registry

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class Int8Settings:
    """An int8 request for a runtime that quantizes at export: ``mode`` (one of the runtime's
    `Runtime.int8_modes`), per-channel weights or not, whether the first and last weighted
    layers stay float (``keep_float_edges``), and for ``static`` the calibration batches (each a
    tuple of positional tensors, as the artifact takes them)."""

    mode: str
    per_channel: bool = True
    calibration: Sequence[tuple[Any, ...]] = ()
    keep_float_edges: bool = False


class Runtime(ABC):
    """Export a model to this runtime's artifact, load it, report its size.

    ``export`` takes a float ``nn.Module`` and an example input of any structure (a batch of at
    least one row); the artifact takes the inputs as positional tensors in
    `evoforge.workload.inputs.InputSpec` order, returns the output tensor and keeps the batch


    """

    name: ClassVar[str]
    artifact_name: ClassVar[str]
    """File name of the artifact inside a candidate's directory (``model.onnx``, ...)."""
    int8_modes: ClassVar[tuple[str, ...]] = ()
    """The int8 modes `export` accepts in ``int8`` (the runtime quantizes the float model)."""
    takes_torch_int8: ClassVar[bool] = False
    """True when `export` also takes models torch.ao has already quantized (the compress
    ``quantize`` stage's own int8); such a runtime offers every mode of that stage."""

    @abstractmethod
    def export(self, model: nn.Module, example_input: Any, path: str | os.PathLike[str], *, int8: Int8Settings | None = None) -> Path:
        """Write the artifact of ``model`` to ``path``; returns ``path``."""

    @abstractmethod
    def load(self, path: str | os.PathLike[str], *, threads: int | None = None) -> nn.Module:
        """The artifact as an eval-mode module taking positional tensors; ``threads`` fixes the
        runtime's intra-op threads (None: the runtime's default)."""

    @abstractmethod
    def load_snippet(self, path: str | os.PathLike[str]) -> str:
        """How a user loads the artifact without evoforge (one line of Python)."""

    def size_bytes(self, path: str | os.PathLike[str]) -> int:
        """Bytes of the deployable artifact."""
        return Path(path).stat().st_size

    def check_int8(self, int8: Int8Settings | None) -> None:
        """Raise `ConfigError` naming the valid modes when ``int8`` asks for one this runtime lacks."""
        if int8 is None:
            return
        if int8.mode not in self.int8_modes:
            valid = ", ".join(self.int8_modes) or "none (int8 is applied to the model before export)"
            raise ConfigError(f"int8 mode {int8.mode!r} is not available on runtime {self.name!r}; its modes: {valid}")
        if int8.mode == "static" and not int8.calibration:
            raise ConfigError(f"static int8 on runtime {self.name!r} needs calibration batches; give Int8Settings(calibration=...)")


RUNTIMES: Registry[type[Runtime]] = Registry("runtime")


def get_runtime(name: str) -> Runtime:
    """A fresh instance of the runtime registered as ``name`` (unknown names list the valid ones)."""
    return RUNTIMES[name]()
