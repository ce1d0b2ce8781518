"""OpenVINO: the ONNX file `onnxruntime` writes, compiled and run by OpenVINO's CPU plugin.

OpenVINO reads ONNX directly, so the artifact is one self-contained ``.onnx`` file (exported as
for ONNX Runtime, drafts included), loaded with ``openvino.Core().compile_model(path, "CPU")``.
It runs in full fp32 (``INFERENCE_PRECISION_HINT`` f32): on a processor with bfloat16 support
OpenVINO's default would compute in bf16, which is faster but no longer the model's numbers. Its
threads are not pinned to cores, so that the one-thread timings of two workers do not share one.

int8 is ``static`` only: the calibrated QDQ graph of ONNX Runtime's quantizer (the same settings:
per-channel weights, float edge layers, attention softmax left float), which OpenVINO turns into
its own int8 kernels. Its dynamic int8 graphs run slower than fp32 in OpenVINO, so that mode is
not offered.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from evoforge.errors import ConfigError
from evoforge.runtimes.base import RUNTIMES
from evoforge.runtimes.onnx_runtime import OnnxRuntime


class OpenVinoModule(nn.Module):
    """An OpenVINO compiled model as a module: positional tensors in, the first output as a tensor out."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__()
        import openvino

        # fp32 (not bf16); one stream; threads left to the OS scheduler, as ONNX Runtime's are (pinned, two
        # one-thread workers could share a core)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                                  "ENABLE_CPU_PINNING": False}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = openvino.Core().compile_model(str(path), "CPU", config)
        self.input_names = [next(iter(i.get_names()), f"input{n}") for n, i in enumerate(self.compiled.inputs)]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"the OpenVINO model takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        outputs = self.compiled([t.detach().cpu().numpy() for t in inputs])
        return torch.from_numpy(np.array(outputs[0]))


@RUNTIMES.register("openvino")
class OpenVinoRuntime(OnnxRuntime):
    """ONNX file + OpenVINO (CPU plugin, fp32); int8 ``static`` (ONNX Runtime's QDQ graph)."""

    name = "openvino"
    artifact_name = "model.openvino.onnx"
    int8_modes = ("static",)

    def __init__(self) -> None:
        if importlib.util.find_spec("openvino") is None:
            raise ConfigError("runtime 'openvino' needs the openvino package; install it with pip install 'evoforge[openvino]'")

    def load(self, path: str | os.PathLike[str], *, threads: int | None = None) -> nn.Module:
        return OpenVinoModule(path, threads).eval()

    def load_snippet(self, path: str | os.PathLike[str]) -> str:
        return f"openvino.Core().compile_model({str(path)!r}, 'CPU', {{'INFERENCE_PRECISION_HINT': 'f32'}})"
