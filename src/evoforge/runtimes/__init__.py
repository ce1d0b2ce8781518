"""Deployment runtimes: export a model, load the artifact, run it, weigh it.

One registry (`RUNTIMES`) of `Runtime` classes, looked up by name; an unknown name lists the valid
ones. ``onnxruntime`` (compress's default) exports ONNX (dynamo exporter) and runs it in ONNX
Runtime with its graph optimizations on, with int8 from ONNX Runtime's own quantization (QDQ static
calibrated on given batches, or dynamic; per-tensor or per-channel weights); ``inductor`` compiles
the ``torch.export`` graph ahead of time into an AOTInductor package, with int8 from torchao (PT2E
static, dynamic and QAT, and weight-only Linear); ``openvino`` runs the same ONNX file in
OpenVINO's CPU plugin (fp32, and static int8 from ONNX Runtime's QDQ graph); ``torchscript`` (the legacy choice) is a frozen
TorchScript file, which also takes torch.ao int8 models. Loaded artifacts are ``nn.Module`` objects
taking positional tensors (`evoforge.workload.inputs.ModelAdapter` order), so latency and quality
code treats every runtime alike. Heavy imports happen inside the runtime that needs them.
"""

from evoforge.runtimes import inductor, onnx_runtime, openvino_runtime, torchscript  # noqa: F401  (register the runtimes)
from evoforge.runtimes.base import RUNTIMES, QuantSettings, Runtime, get_runtime

__all__ = ["RUNTIMES", "QuantSettings", "Runtime", "get_runtime"]
