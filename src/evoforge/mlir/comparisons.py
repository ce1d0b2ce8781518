"""What the original model costs in the runtimes a user would reach for instead of evolving it.

When `evolve` starts from a PyTorch model (a built-in program, a compress member, a module), the
model is timed at the program's batch in torch eager, in torch.compile (inductor, with freezing),
in ONNX Runtime, in OpenVINO (the same ONNX file; when installed) and in IREE with its own
``--iree-opt-level=O3``, round-robin against the original program compiled with the run's flags,
all in one process on one thread (``compare_runtimes="fast"`` leaves torch.compile out). The
medians go to ``program/comparisons.json`` with each contender's paired ratio to the original (the
median over rounds of the two times within a round, which a burst of load slows alike); a
variant's time against each is its (interleaved) runtime ratio over that paired ratio.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

COMPARISONS = "comparisons.json"
IREE_O3 = "--iree-opt-level=O3"
CONTENDERS = ("torch_eager", "torch_compile", "onnxruntime", "openvino", "iree_o3")
"""Keys of the times recorded besides ``iree`` (the original as the run compiles it)."""


def record_comparisons(
    model: Any, example: tuple[Any, ...], program: Any, directory: Path, *, target: str, extra_flags: Sequence[str],
    driver: str, compare_runtimes: str = "all", repeats: int = 15, calls: int = 3,
) -> dict[str, Any]:
    """Time ``model`` (a module taking ``example``'s positional tensors) in each contender
    ``compare_runtimes`` names (`evoforge.runtimes.base.COMPARE_RUNTIMES`; ``"none"`` is the
    caller's to skip) and the original ``program`` in IREE (compiled for ``target`` with
    ``extra_flags``, run by ``driver`` as the run's variants are), interleaved; write and return
    ``{"ms": {...}, ...}``. A contender that cannot take the model is recorded with its error
    instead of a time, one left out with why under ``skipped``."""
    import torch

    from evoforge.hostlock import MeasurementLock
    from evoforge.mlir.iree_runner import paired_ratio
    from evoforge.quiet import quiet_torch_internals
    from evoforge.runtimes.base import check_compare_runtimes

    check_compare_runtimes(compare_runtimes)
    arrays = [t.detach().cpu().numpy() for t in example]
    runners: dict[str, Callable[[], Any]] = {"iree": _iree_runner(program, target, extra_flags, driver, arrays)}
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    onnx_dir = tempfile.TemporaryDirectory(prefix="evoforge-compare-")
    builders: dict[str, Callable[[], Callable[[], Any]]] = {
        "torch_eager": lambda: _torch_runner(model, example),
        "torch_compile": lambda: _compiled_runner(model, example),
        "onnxruntime": lambda: _onnx_runner("onnxruntime", model, example, Path(onnx_dir.name)),
        "openvino": lambda: _onnx_runner("openvino", model, example, Path(onnx_dir.name)),
        "iree_o3": lambda: _iree_runner(program, target, [*extra_flags, IREE_O3], driver, arrays),
    }
    if compare_runtimes == "fast":
        del builders["torch_compile"]
        skipped["torch_compile"] = "it compiles native code (tens of seconds, minutes on a large model); compare_runtimes='all' times it"
    if importlib.util.find_spec("openvino") is None:
        del builders["openvino"]
        skipped["openvino"] = "not installed (pip install openvino)"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, build in builders.items():
            try:
                with quiet_torch_internals():  # dynamo's and the exporters' notices about the model
                    runners[name] = build()
                    runners[name]()  # warm-up (and, for torch.compile, the compilation)
            except Exception as exc:  # noqa: BLE001 - a runtime that cannot take the model is a finding
                runners.pop(name, None)
                errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        times: dict[str, list[float]] = {name: [] for name in runners}
        order = list(runners)
        with MeasurementLock(), torch.no_grad():
            for r in range(repeats):
                for name in order[r % len(order):] + order[: r % len(order)]:  # rotate who goes first
                    times[name].append(_median_ms(runners[name], calls))
    finally:
        torch.set_num_threads(threads)
        onnx_dir.cleanup()
    record = {
        "ms": {name: statistics.median(values) for name, values in times.items()},
        "ratio_to_iree": {name: paired_ratio(values, times["iree"]) for name, values in times.items() if name != "iree"},
        "errors": errors,
        "skipped": skipped,
        "batch": int(example[0].shape[0]),
        "iree_flags": list(extra_flags),
        "iree_driver": driver,
        "threads": 1,
    }
    (directory / COMPARISONS).write_text(json.dumps(record, indent=2))
    return record


def load_comparisons(directory: Path) -> dict[str, Any] | None:
    path = directory / COMPARISONS
    return dict(json.loads(path.read_text())) if path.exists() else None


def versus(runtime_ratio: float, record: dict[str, Any]) -> dict[str, float]:
    """A variant's time over each contender's, from its runtime ratio to the original: over the
    contender's paired ratio to the original, or (records written before it was kept) over the
    ratio of their medians."""
    ms = record["ms"]
    paired = record.get("ratio_to_iree") or {name: ms[name] / ms["iree"] for name in CONTENDERS if name in ms}
    return {f"vs_{name}": runtime_ratio / paired[name] for name in CONTENDERS if name in paired}


SLOWER_BY = 1.2
"""How much slower IREE must run the original than another runtime before `show` warns about it."""
LABELS = {"torch_eager": "torch eager", "torch_compile": "torch.compile", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO",
          "iree_o3": "IREE -O3"}


def iree_behind(record: dict[str, Any]) -> str | None:
    """A sentence when another runtime runs the original model at least `SLOWER_BY` times faster
    than the run's IREE program (then only variants that much faster than the original beat the
    unmodified model there), or None."""
    paired = versus(1.0, record)  # the original's time over each contender's
    rivals = {name: ratio for name, ratio in paired.items() if name != "vs_iree_o3" and ratio >= SLOWER_BY}
    if not rivals:
        return None
    name = max(rivals, key=lambda n: rivals[n])
    label = LABELS[name.removeprefix("vs_")]
    return (f"IREE runs the original program {rivals[name]:.2f}x slower than {label} does the model: a variant "
            f"beats the unmodified model in {label} only when it is {rivals[name]:.2f}x faster than the original "
            f"({name} < 1); on this model `evoforge compress` in that runtime may serve better")


def _median_ms(run: Callable[[], Any], calls: int) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def _torch_runner(model: Any, example: tuple[Any, ...]) -> Callable[[], Any]:
    model = model.eval()
    return lambda: model(*example)


def _compiled_runner(model: Any, example: tuple[Any, ...]) -> Callable[[], Any]:
    import torch
    import torch._inductor.config as inductor_config

    compiled = torch.compile(model.eval())
    with inductor_config.patch(freezing=True), torch.no_grad():  # weights folded as constants: inductor's CPU inference setting
        compiled(*example)  # compiles now, under the patch
    return lambda: compiled(*example)


def _onnx_runner(name: str, model: Any, example: tuple[Any, ...], directory: Path) -> Callable[[], Any]:
    """``model`` in runtime ``name`` (ONNX Runtime or OpenVINO, which load the same file: it is
    exported into ``directory`` once), on one thread."""
    from evoforge.runtimes import get_runtime

    path = directory / "model.onnx"
    if not path.exists():
        get_runtime("onnxruntime").export(model, example[0] if len(example) == 1 else example, path)
    session = get_runtime(name).load(path, threads=1)
    return lambda: session(*example)


def _iree_runner(program: Any, target: str, flags: Sequence[str], driver: str, arrays: list[np.ndarray]) -> Callable[[], Any]:
    from evoforge.mlir.iree_runner import _load, _to_host, compile_program

    function = _load(compile_program(program.text, input_type=program.input_type, target=target, extra_flags=flags),
                     driver, program.entry)
    return lambda: _to_host(function(*arrays))
