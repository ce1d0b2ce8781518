"""Export a (compressed) model as a self-contained TorchScript file.

The file is the deployable artifact: its size is the size objective, and the final numbers of a
front are computed by running it. It loads with plain ``torch.jit.load``; evoforge is not needed.
It takes the model's inputs as positional tensors (in `InputSpec` order: dict inputs by their
names' order) and returns the output tensor (``.logits`` of an output object). Works for float,
pruned, low-rank (``nn.Sequential`` factors) and torch.ao int8 (eager or FX) models, and in
bfloat16 (``bf16``: weights and arithmetic, float32 in and out).
`TorchScriptRuntime` is this format in the `RUNTIMES` registry.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evoforge.errors import EvaluationError
from evoforge.runtimes.base import RUNTIMES, QuantSettings, Runtime, check_artifact_output, drop_archive_members
from evoforge.workload.inputs import Bf16Model, InputSpec, ModelAdapter, to_tensors

_CHECK_ATOL = 1e-4
_CHECK_RTOL = 1e-3


def export_model(model: nn.Module, example_input: Any, path: str | os.PathLike[str], *, bf16: bool = False) -> Path:
    """Trace ``model`` (a copy, in eval mode, taking positional inputs: see `ModelAdapter`;
    with ``bf16``, in bfloat16: see `Bf16Model`) on ``example_input`` (any input structure) and
    save TorchScript to ``path``.

    The traced module is frozen (submodules inlined, batch-norm folded into convolutions), so
    baseline and candidates alike are measured in their deployable form. The saved file is
    reloaded and run on ``example_input``; raises `EvaluationError` if tracing
    fails or the reloaded module's output differs from the model's (bf16: has another shape or
    values that are not finite). The batch dimension stays
    dynamic, so a file traced at batch 1 runs at any batch size. Returns ``path`` as a `Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = InputSpec.of(example_input)
    module: nn.Module = ModelAdapter(copy.deepcopy(model), spec).eval()
    args = spec.flatten(to_tensors(example_input))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings and torch.jit deprecation notices
            expected = module(*args)
            if bf16:
                module = Bf16Model(module)
            traced = torch.jit.trace(module, args, check_trace=False)
            # freezing inlines submodules and folds batch-norm: a smaller, faster deployable file
            torch.jit.freeze(traced.eval()).save(str(path))
            _strip_debug_info(path)
            got = load_exported(path, device=args[0].device)(*args)
    except Exception as exc:
        raise EvaluationError(f"TorchScript export of {type(model).__name__} failed: {type(exc).__name__}: {exc}") from exc
    if bf16:
        check_artifact_output(got, expected, QuantSettings("bf16"), "TorchScript")
        return path
    if not torch.allclose(got.float(), expected.float(), atol=_CHECK_ATOL, rtol=_CHECK_RTOL):
        diff = float((got.float() - expected.float()).abs().max())
        raise EvaluationError(f"exported TorchScript output differs from the model by up to {diff:.3g}")
    return path


def _strip_debug_info(path: Path) -> None:
    """Rewrite the TorchScript archive at ``path`` without its ``.debug_pkl`` records: the source
    ranges of the traced code, with the absolute paths of the user's source files. ``torch.jit.load``
    does not need them (an error inside the model then names no Python line)."""
    drop_archive_members(path, lambda name: name.endswith(".debug_pkl"))


def load_exported(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """Load an exported artifact with ``torch.jit.load`` (no evoforge code involved), in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module: torch.jit.ScriptModule = torch.jit.load(str(path), map_location=device)
    return module.eval()


@RUNTIMES.register("torchscript")
class TorchScriptRuntime(Runtime):
    """Frozen TorchScript (`export_model`), run by ``torch.jit.load``; int8 is torch.ao's,
    applied to the model before export (the compress ``quantize`` stage); ``bf16`` at export."""

    name = "torchscript"
    artifact_name = "model.pt"
    quant_modes = ("bf16",)
    takes_torch_int8 = True

    def export(self, model: nn.Module, example_input: Any, path: str | os.PathLike[str], *,
               quant: QuantSettings | None = None, draft: bool = False) -> Path:
        self.check_quant(quant)
        return export_model(model, example_input, path, bf16=quant is not None)

    def load(self, path: str | os.PathLike[str], *, threads: int | None = None) -> nn.Module:
        if threads is not None:
            torch.set_num_threads(threads)
        return load_exported(path)

    def load_snippet(self, path: str | os.PathLike[str]) -> str:
        return f"torch.jit.load({str(path)!r})"
