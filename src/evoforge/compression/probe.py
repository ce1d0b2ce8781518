"""Which compression stages work on a model: tried once, on a copy, before the search starts.

Each stage kind, pruning importance and quantize mode is applied to a copy of the baseline on a
few batches of data and the result is exported to the run's runtime and run there (the modes the
runtime applies at export are applied by that export). What fails, the modes the runtime lacks,
and bf16 on a processor without bfloat16 arithmetic, are left out of the `SearchSpace` and
reported with their reason, so the search never draws a candidate that fails for a reason it
could have avoided (a layer torch.ao cannot quantize, a graph torch-pruning cannot trace, an
operator the ONNX exporter lacks). Candidates can still fail for reasons only their full settings
reveal; those are recorded results.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch import nn

from evoforge import machine
from evoforge.compression.genome import IMPORTANCES, QUANT_MODES, STAGE_SPACES, PipelineGenome, Stage
from evoforge.compression.operators import SearchSpace
from evoforge.errors import PruningWarning
from evoforge.runtimes.base import Runtime
from evoforge.workload.data import Splits
from evoforge.workload.task import Task

_PROBE_BATCHES = 2  # batches of train / calibration / validation data each probe sees


def probe_stages() -> dict[str, Stage]:
    """The probe of every stage kind, importance and int8 mode, by name (``prune:l1``, ...)."""
    probes = {f"prune:{imp}": Stage.make("prune", importance=imp, ratio=0.3, steps=1, allocation="uniform", round_to=1, epochs=0)
              for imp in IMPORTANCES}
    probes["lowrank"] = Stage.make("lowrank", energy=0.9, reg_epochs=1, epochs=0)
    probes["finetune"] = Stage.make("finetune", epochs=1)
    for mode in QUANT_MODES:
        probes[f"quantize:{mode}"] = Stage.make("quantize", mode=mode, per_channel=True, keep_float_edges=False,
                                               epochs=1 if mode == "qat" else 0)
    return probes


def probe_capabilities(model: nn.Module, splits: Splits, task: Task, *, device: str = "cpu",
                       runtime: Runtime | None = None) -> tuple[SearchSpace, dict[str, str]]:
    """The search space of what works on ``model`` (the trained baseline, left unchanged) in
    ``runtime`` (default torchscript) and the reason each refused probe failed
    (``{"quantize:static": "RuntimeError: ..."}``)."""
    import torch

    from evoforge.compression.domain import UNAVAILABLE, calibration_batches, runtime_quant_modes, split_quant
    from evoforge.compression.stages import StageContext, apply_pipeline, protected_layers
    from evoforge.runtimes import get_runtime
    from evoforge.workload.inputs import call_model
    from evoforge.workload.task import example_input
    from evoforge.workload.training import train

    runtime = runtime or get_runtime("torchscript")

    small = _few_batches(splits, task.batch_size)
    example = example_input(small)
    ctx = StageContext(data=small, training=task.training, example_input=example, seed=0,
                       protected=protected_layers(model, example), device=device, batch_size=task.batch_size)
    deployable = runtime_quant_modes(runtime)
    refused = {f"quantize:{m}": f"{UNAVAILABLE}runtime {runtime.name!r}" for m in QUANT_MODES if m not in deployable}
    if "quantize:bf16" not in refused and not machine.native_bf16():
        refused["quantize:bf16"] = (f"{UNAVAILABLE}this processor: it has no bfloat16 arithmetic "
                                    f"({', '.join(machine.BF16_FEATURES)}): bf16 is emulated there (slower than float32) or ignored")
    calibration = calibration_batches(small, task.batch_size)

    def train_qat(fake_quantized: nn.Module, epochs: int) -> object:
        return train(fake_quantized, small, task.training, epochs=epochs, seed=0, batch_size=task.batch_size, device=device)

    exported_prune = False
    with warnings.catch_warnings():
        if runtime.takes_torch_int8:
            warnings.simplefilter("ignore")  # torch.ao's deprecation notices on every call; failures are what count
        for name, stage in probe_stages().items():
            if name in refused:
                continue
            try:
                in_torch, quant = split_quant(PipelineGenome((stage,), task.training), runtime, calibration, train_qat)
                with torch.random.fork_rng(), _pruning_noted(refused):
                    torch.manual_seed(0)
                    result = apply_pipeline(copy.deepcopy(model), in_torch, ctx)
                if name.startswith("prune:") and exported_prune:
                    # importances pick different channels of the same shapes: the exporter saw this graph
                    with torch.no_grad():
                        call_model(result.eval(), example)
                    continue
                runtime.check_export(result, example, quant=quant)
                exported_prune = exported_prune or name.startswith("prune:")
            except Exception as exc:  # noqa: BLE001 - a refused probe is a finding, not an error
                refused[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    importances = tuple(i for i in IMPORTANCES if f"prune:{i}" not in refused)
    modes = tuple(m for m in QUANT_MODES if f"quantize:{m}" not in refused)
    kinds = tuple(k for k in sorted(STAGE_SPACES) if k in ("prune", "quantize") or k not in refused)
    return SearchSpace(kinds=kinds, importances=importances, quant_modes=modes), refused


@contextlib.contextmanager
def _pruning_noted(refused: dict[str, str]) -> Iterator[None]:
    """Inside, a `PruningWarning` (layers a prune stage keeps whole) is recorded in ``refused``
    under ``prune:layers`` instead of shown; other warnings are shown as usual."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", PruningWarning)
        show = warnings.showwarning

        def note(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, PruningWarning):
                refused.setdefault("prune:layers", str(message))
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = note
        yield


def seconds_per_epoch(model: nn.Module, splits: Splits, task: Task, *, device: str = "cpu") -> float:
    """Seconds one epoch of training the baseline (train split, then the validation pass) takes
    on one thread, timed on a few batches of a copy after a warm-up and scaled to the splits."""
    import time

    import torch

    from evoforge.workload.training import train

    small = _few_batches(splits, task.batch_size, batches=3)
    copied = copy.deepcopy(model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            train(copied, small, task.training, epochs=1, seed=0, batch_size=task.batch_size, device=device)  # warm-up
            start = time.perf_counter()
            train(copied, small, task.training, epochs=1, seed=0, batch_size=task.batch_size, device=device)
            elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    measured = len(small.train) + len(small.val) / 3  # an inference example costs about a third of a training one
    return elapsed * (len(splits.train) + len(splits.val) / 3) / measured


def _few_batches(splits: Splits, batch_size: int, batches: int = _PROBE_BATCHES) -> Splits:
    def head(split: Any) -> Any:
        return split.subset(np.arange(min(len(split), batches * batch_size)))

    return dataclasses.replace(splits, train=head(splits.train), calib=head(splits.calib), val=head(splits.val))


__all__ = ["probe_capabilities", "probe_stages", "seconds_per_epoch"]
