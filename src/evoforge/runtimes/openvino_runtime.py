"""OpenVINO: the ONNX file `onnxruntime` writes, compiled and run by OpenVINO's CPU plugin.

OpenVINO reads ONNX directly, so the artifact is one self-contained ``.onnx`` file (exported as
for ONNX Runtime, drafts included), loaded with ``openvino.Core().compile_model(path, "CPU")``.
It runs in full fp32 (``INFERENCE_PRECISION_HINT`` f32): on a processor with bfloat16 support
OpenVINO's default would compute in bf16, which is faster but no longer the model's numbers. Its
threads are not pinned to cores, so that the one-thread timings of two workers do not share one.

Two reduced-precision modes:

- ``static`` int8: the calibrated QDQ graph of ONNX Runtime's quantizer (the same settings:
  per-channel weights, float edge layers, attention softmax left float), which OpenVINO turns
  into its own int8 kernels. Its dynamic int8 graphs run slower than fp32 in OpenVINO, so that
  mode is not offered.
- ``bf16``: the float graph with its weights stored in float16 (each behind a Cast to float,
  which OpenVINO keeps compressed: half the file), marked to run with
  ``INFERENCE_PRECISION_HINT`` bf16 (the ONNX metadata entry `PRECISION_KEY`, which `load` reads
  back), OpenVINO's own default on processors with bfloat16 arithmetic. float16 keeps more of
  each weight's precision than the bf16 arithmetic that uses it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evoforge.errors import ConfigError
from evoforge.runtimes.base import RUNTIMES, QuantSettings
from evoforge.runtimes.onnx_runtime import OnnxRuntime

PRECISION_KEY = "openvino_inference_precision"
"""ONNX metadata key of the ``INFERENCE_PRECISION_HINT`` a file runs with (absent: f32)."""
_FP16_MAX = 65504.0
_HALVED_MIN_SIZE = 1024  # smaller weights (biases, norms) stay float32: they weigh nothing


def _half_weights(graph: Any) -> None:
    """Store ``graph``'s float32 initializers of at least `_HALVED_MIN_SIZE` values as float16,
    each read through a Cast back to float32 under its old name (one within float16's range only)."""
    import onnx
    from onnx import numpy_helper

    casts = []
    for initializer in graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(initializer)
        if values.size < _HALVED_MIN_SIZE or not np.all(np.abs(values) < _FP16_MAX):
            continue
        name = initializer.name
        initializer.CopyFrom(numpy_helper.from_array(values.astype(np.float16), f"{name}_fp16"))
        casts.append(onnx.helper.make_node("Cast", [f"{name}_fp16"], [name], to=onnx.TensorProto.FLOAT, name=f"{name}_to_fp32"))
    for cast in reversed(casts):
        graph.node.insert(0, cast)


def inference_precision(model: Any) -> str:
    """The precision hint an ``openvino.Model`` read from our ONNX file asks for (``f32`` when unmarked)."""
    if model.has_rt_info(["framework", PRECISION_KEY]):
        return str(model.get_rt_info(["framework", PRECISION_KEY]).astype(str))
    return "f32"


class OpenVinoModule(nn.Module):
    """An OpenVINO compiled model as a module: positional tensors in, the first output as a tensor out."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__()
        import openvino

        core = openvino.Core()
        model = core.read_model(str(path))
        # the file's precision (f32 unless marked bf16); one stream; threads left to the OS scheduler,
        # as ONNX Runtime's are (pinned, two one-thread workers could share a core)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": inference_precision(model), "PERFORMANCE_HINT": "LATENCY",
                                  "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.input_names = [next(iter(i.get_names()), f"input{n}") for n, i in enumerate(self.compiled.inputs)]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"the OpenVINO model takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        outputs = self.compiled([t.detach().cpu().numpy() for t in inputs])
        return torch.from_numpy(np.array(outputs[0]))


@RUNTIMES.register("openvino")
class OpenVinoRuntime(OnnxRuntime):
    """ONNX file + OpenVINO (CPU plugin, fp32); int8 ``static`` (ONNX Runtime's QDQ graph) and
    ``bf16`` (float16 weights, bf16 arithmetic)."""

    name = "openvino"
    package = "openvino"
    artifact_name = "model.openvino.onnx"
    quant_modes = ("static", "bf16")

    def __init__(self) -> None:
        if importlib.util.find_spec("openvino") is None:
            raise ConfigError("runtime 'openvino' needs the openvino package; install it with pip install 'evoforge[openvino]'")

    def _finish(self, path: Path, quant: QuantSettings | None) -> None:
        """A bf16 file: the float graph with float16 weights and the bf16 precision mark, which
        the export's check then loads it through (as int8 files, only its shape and finiteness
        are checked there; how far it moves the outputs is measured on data)."""
        if quant is None or quant.mode != "bf16":
            return
        import onnx

        proto = onnx.load(str(path))
        _half_weights(proto.graph)
        entry = proto.metadata_props.add()
        entry.key, entry.value = PRECISION_KEY, "bf16"
        onnx.save(proto, str(path))

    def load(self, path: str | os.PathLike[str], *, threads: int | None = None) -> nn.Module:
        return OpenVinoModule(path, threads).eval()

    def load_snippet(self, path: str | os.PathLike[str]) -> str:
        import openvino

        precision = inference_precision(openvino.Core().read_model(str(path)))
        return f"openvino.Core().compile_model({str(path)!r}, 'CPU', {{'INFERENCE_PRECISION_HINT': {precision!r}}})"
