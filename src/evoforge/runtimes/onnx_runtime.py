"""ONNX Runtime: the model exported with torch's dynamo ONNX exporter into one self-contained
``.onnx`` file, run by an ``onnxruntime.InferenceSession`` with every graph optimization on.

int8 is ONNX Runtime's own quantization of that file (no torch.ao involved): ``static`` writes a
QDQ graph (int8 weights, uint8 activations) whose activation ranges come from the calibration
batches; ``dynamic`` stores int8 weights and computes activation scales per call. Either may
quantize weights per channel.

A draft export (for screening evaluations) uses torch's TorchScript-based ONNX exporter when it
can trace the model: 10-30x faster than dynamo on small models, with the same weights in a
graph ONNX Runtime optimizes alike.

A full export traces the model only once per architecture in a process: the unoptimized graph of
an earlier model with the same structure, parameter shapes and inputs takes this model's weights
(its initializers are the state dict's tensors, by name), and the exporter's optimizer then runs
on it as on a fresh trace. The file is byte-identical to a fresh export's (tested), and a reused
graph is checked against the model's own output before it is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from evoforge.errors import EvaluationError
from evoforge.quiet import quiet_onnx_converters
from evoforge.runtimes.base import RUNTIMES, QuantSettings, Runtime, adapted, check_artifact_output
from evoforge.workload.inputs import InputSpec

_MAX_BATCH = 1 << 16
_ORT_INT8_MODES = ("dynamic", "static")  # what ONNX Runtime's quantizer writes (QDQ static, dynamic)


class OrtModule(nn.Module):
    """An ONNX Runtime session as a module: positional tensors in, the first output as a tensor out."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"the ONNX model takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        feed = {name: t.detach().cpu().numpy() for name, t in zip(self.input_names, inputs)}
        return torch.from_numpy(np.asarray(self.session.run(None, feed)[0]))


@RUNTIMES.register("onnxruntime")
class OnnxRuntime(Runtime):
    """ONNX file + ONNX Runtime (CPU provider); int8 ``static`` (QDQ) and ``dynamic``."""

    name = "onnxruntime"
    package = "onnxruntime"
    artifact_name = "model.onnx"
    quant_modes: ClassVar[tuple[str, ...]] = _ORT_INT8_MODES
    artifact_format = "onnx"
    drafts = True
    narrows_int8_weights = True

    def export(self, model: nn.Module, example_input: Any, path: str | os.PathLike[str], *,
               quant: QuantSettings | None = None, draft: bool = False) -> Path:
        self.check_quant(quant)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        spec, args, module = adapted(model, example_input)
        try:
            with torch.no_grad():
                expected = module(*args)
            if quant is None or quant.mode not in _ORT_INT8_MODES:
                _export_onnx(module, args, spec, path, expected, draft=draft)
            else:
                with tempfile.TemporaryDirectory(prefix="evoforge-onnx-") as tmp:
                    floating = _export_onnx(module, args, spec, Path(tmp) / "float.onnx", expected, draft=draft)
                    with quiet_onnx_converters():
                        _quantize(floating, path, quant, spec.names)
            self._finish(path, quant)
            session = self.load(path)
            got = session(*args)
            if session(*(t[:1] for t in args)).shape[0] != 1:
                raise EvaluationError("the ONNX artifact does not keep the batch dimension dynamic")
        except EvaluationError:
            raise
        except Exception as exc:
            raise EvaluationError(f"ONNX export of {type(model).__name__} failed: {type(exc).__name__}: {_summary(exc)}") from exc
        check_artifact_output(got, expected, quant, "ONNX")
        return path

    def _finish(self, path: Path, quant: QuantSettings | None) -> None:
        """Rewrite the ONNX file at ``path`` for ``quant`` where a runtime of this format needs
        more than ONNX Runtime's quantizer gives (OpenVINO's bf16); ONNX Runtime needs nothing."""

    def load(self, path: str | os.PathLike[str], *, threads: int | None = None) -> nn.Module:
        return OrtModule(path, threads).eval()

    def load_snippet(self, path: str | os.PathLike[str]) -> str:
        return f"onnxruntime.InferenceSession({str(path)!r})"


def _summary(exc: Exception) -> str:
    """The line of an exporter error that says what went wrong (its message is pages long)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("<class"):
            return line[:300]
    return lines[0][:300] if lines else ""


def _export_onnx(module: nn.Module, args: tuple[Any, ...], spec: InputSpec, path: Path, expected: torch.Tensor, *,
                 draft: bool = False) -> Path:
    """Export with the dynamo exporter (reusing the graph of an earlier model of the same
    architecture, `_reused_graph`); a ``draft`` first tries the TorchScript-based exporter,
    which is 10-25x faster on small models (0.02-0.05 s against 0.5 s for digits-cnn) but deprecated
    upstream and less general, and falls back to dynamo when it fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter notices about torch internals; the output check decides
        if draft:
            try:
                dynamic = {name: {0: "batch"} for name in (*spec.names, "output")}
                torch.onnx.export(module, args, str(path), dynamo=False, verbose=False, input_names=list(spec.names),
                                  output_names=["output"], dynamic_axes=dynamic)
                return path
            except Exception:  # noqa: BLE001 - the general exporter below decides
                pass
        state = module.state_dict()
        key = _architecture_key(module, state, args, spec)
        reused = _reused_graph(key, state)
        if reused is not None:
            _optimize_and_save(reused, path)
            if _reproduces(path, args, expected):
                return path
        graph = _dynamo_export(module, args, spec)
        _keep_graph(key, graph)
        _optimize_and_save(graph, path)
    return path


def _dynamo_export(module: nn.Module, args: tuple[Any, ...], spec: InputSpec) -> bytes:
    """torch's dynamo exporter, without its optimizer (`_optimize_and_save` runs it): the
    serialized ONNX model."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=_MAX_BATCH)
    with _torchlib_registry_reused(), quiet_onnx_converters():
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            optimize=False,
            external_data=False,
            verbose=False,
            input_names=list(spec.names),
            output_names=["output"],
            dynamic_shapes=(tuple({0: batch} for _ in args),),  # one entry: ModelAdapter takes *inputs
        )
    assert program is not None  # the dynamo exporter always returns its program
    return bytes(program.model_proto.SerializeToString())


_UNOPTIMIZED_GRAPHS: OrderedDict[str, bytes] = OrderedDict()
"""Unoptimized exports this process made, by `_architecture_key`, least recently used first."""
_GRAPHS_KEPT = 16
_GRAPH_BYTES_KEPT = 256 << 20


def _keep_graph(key: str, graph: bytes) -> None:
    """Store ``graph`` under ``key``, evicting the least recently used beyond `_GRAPHS_KEPT`
    graphs or `_GRAPH_BYTES_KEPT` bytes (a graph larger than that is not kept)."""
    if len(graph) > _GRAPH_BYTES_KEPT:
        return
    _UNOPTIMIZED_GRAPHS[key] = graph
    _UNOPTIMIZED_GRAPHS.move_to_end(key)
    while len(_UNOPTIMIZED_GRAPHS) > _GRAPHS_KEPT or sum(map(len, _UNOPTIMIZED_GRAPHS.values())) > _GRAPH_BYTES_KEPT:
        _UNOPTIMIZED_GRAPHS.popitem(last=False)


def _architecture_key(module: nn.Module, state: dict[str, torch.Tensor], args: tuple[Any, ...], spec: InputSpec) -> str:
    """What decides an export's graph apart from the weights' values: the module tree with each
    module's settings (its repr) and class, every state tensor's name, shape and dtype, and the
    inputs' names, dtypes and shapes past the batch dimension."""
    parts = [repr(module), *(f"{name}:{type(m).__module__}.{type(m).__qualname__}" for name, m in module.named_modules())]
    parts += [f"{name}:{tuple(t.shape)}:{t.dtype}" for name, t in state.items()]
    parts += [f"{name}:{tuple(a.shape[1:])}:{a.dtype}" for name, a in zip(spec.names, args)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _reused_graph(key: str, state: dict[str, torch.Tensor]) -> bytes | None:
    """The stored unoptimized graph for ``key`` with the weights in ``state`` (a state dict) in
    place of the ones it was exported with, or None (none stored, or an initializer that is not a
    state tensor)."""
    import onnx
    from onnx import numpy_helper

    graph = _UNOPTIMIZED_GRAPHS.get(key)
    if graph is None:
        return None
    _UNOPTIMIZED_GRAPHS.move_to_end(key)
    proto = onnx.load_from_string(graph)
    try:
        for init in proto.graph.initializer:
            if init.name not in state:
                return None
            init.CopyFrom(numpy_helper.from_array(state[init.name].detach().cpu().numpy(), init.name))
    except (TypeError, ValueError):  # a dtype numpy cannot hold (bfloat16)
        return None
    return bytes(proto.SerializeToString())


def _optimize_and_save(graph: bytes, path: Path) -> None:
    """Run the dynamo exporter's optimizer on an unoptimized export and write the result without
    the exporter's debug info: each node's doc string and metadata (the Python stack trace, with
    the absolute paths of the user's source files, the module path and the FX node), about half of
    a small int8 model's file (digits-cnn: 13 of 27 KB) and nothing a runtime reads. Every float
    file and the quantizer's input come from here; the TorchScript-based draft exporter writes none."""
    import onnx
    import onnx_ir as ir
    from torch.onnx._internal.exporter import _onnx_program

    program = _onnx_program.ONNXProgram(ir.serde.deserialize_model(onnx.load_from_string(graph)), None)
    with quiet_onnx_converters():
        program.optimize()
    for node in program.model.graph.all_nodes():  # the exporter's debug info (see the docstring)
        node.metadata_props.clear()
        node.doc_string = None
    program.save(str(path), external_data=False)


def _reproduces(path: Path, args: tuple[Any, ...], expected: torch.Tensor) -> bool:
    """Whether the float ONNX file at ``path`` gives the model's output on the export arguments
    (`check_artifact_output`'s test for a float artifact)."""
    try:
        check_artifact_output(OrtModule(path)(*args), expected, None, "ONNX")
    except Exception:  # noqa: BLE001 - a graph that does not load or reproduce is not reused
        return False
    return True


_TORCHLIB_REGISTRIES: dict[Any, Any] = {}
"""The dynamo exporter's operator registries this process built, by their build arguments."""


@contextlib.contextmanager
def _torchlib_registry_reused() -> Iterator[None]:
    """Within the block, torch's dynamo ONNX exporter takes its operator registry from
    `_TORCHLIB_REGISTRIES` instead of rebuilding it from torchlib on every export: half of an
    export's time on a small model (0.5 of 1.0 s for digits-cnn). The exporter only reads the
    registry, so the file written is byte-identical (tested). A torch without this private
    hook exports as before."""
    try:
        from torch.onnx._internal.exporter import _registration

        registry_class = _registration.ONNXRegistry
        original = registry_class.__dict__["from_torchlib"]
        build = original.__func__
    except (ImportError, AttributeError, KeyError):
        yield
        return

    def reused(cls: type, *args: Any, **kwargs: Any) -> Any:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _TORCHLIB_REGISTRIES:
            _TORCHLIB_REGISTRIES[key] = build(cls, *args, **kwargs)
        return _TORCHLIB_REGISTRIES[key]

    setattr(registry_class, "from_torchlib", classmethod(reused))  # noqa: B010 - a scoped patch of torch's class
    try:
        yield
    finally:
        setattr(registry_class, "from_torchlib", original)  # noqa: B010


class _Calibration:
    """ONNX Runtime's calibration reader protocol over positional batches."""

    def __init__(self, batches: Any, names: tuple[str, ...]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(
            [{n: t.detach().cpu().numpy() for n, t in zip(names, batch)} for batch in batches]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _quantize(floating: Path, path: Path, quant: QuantSettings, names: tuple[str, ...]) -> None:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_dynamic, quantize_static

    # 7-bit weights cannot overflow the 16-bit sums of the int8 kernels of x86 processors without VNNI
    narrow = quant.int8_weight_bits() == 7
    prepared = floating.with_name("prepared.onnx")
    quant_pre_process(str(floating), str(prepared), skip_symbolic_shape=True)
    graph = onnx.load(str(prepared)).graph
    excluded = _edge_layers(graph) if quant.keep_float_edges else []
    if quant.mode == "static":
        excluded = list(dict.fromkeys(excluded + _attention_nodes(graph)))
    if quant.mode == "dynamic":
        quantize_dynamic(str(prepared), str(path), per_channel=quant.per_channel, weight_type=QuantType.QInt8,
                         nodes_to_exclude=excluded, reduce_range=narrow)
    else:
        # The quantizer computes a scale and zero point for every tensor it calibrated, also ones
        # between nodes left float: an attention mask of -inf (a TorchScript-exported BERT's) gets a
        # NaN zero point that no node uses, and numpy warns about it. A quantized tensor with such a
        # range would make the output non-finite, which the export's output check refuses.
        with np.errstate(divide="ignore", invalid="ignore"):
            quantize_static(
                str(prepared),
                str(path),
                _Calibration(quant.calibration, names),
                quant_format=QuantFormat.QDQ,
                per_channel=quant.per_channel,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                nodes_to_exclude=excluded,
                reduce_range=narrow,
            )


_FRAGILE_OPS = ("Softmax", "LayerNormalization", "Where", "IsNaN")
_MASK_MAGNITUDE = 1e30
"""A constant operand this large (an attention mask's float minimum) or not finite marks its node
as mask arithmetic, which static int8 leaves float."""


def _attention_nodes(graph: Any) -> list[str]:
    """Names of the nodes static int8 leaves in float: softmax, layer norm, the masking ops (those
    named, and those with a constant operand beyond `_MASK_MAGNITUDE`: quantized as a weight, the
    float minimum dequantizes to infinity in one rounding and to a finite value in another), and
    whatever computes a softmax's input (an attention mask adds the float minimum, so one uint8
    range cannot hold both it and the scores). Quantizing them took a BERT from 82% to 56%
    accuracy; leaving them float keeps 81% at 0.58 of its float latency (bert-tokens). Graphs
    without them (CNNs) are unaffected."""
    from onnx import numpy_helper

    producer = {output: node for node in graph.node for output in node.output}
    constants = {init.name: init for init in graph.initializer}
    constants.update({n.output[0]: n.attribute[0].t for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})

    def mask_like(name: str) -> bool:
        if name not in constants:
            return False
        values = numpy_helper.to_array(constants[name])
        return values.dtype.kind == "f" and values.size > 0 and not bool(np.all(np.abs(values) < _MASK_MAGNITUDE))

    names = [n.name for n in graph.node if n.op_type in _FRAGILE_OPS or any(mask_like(i) for i in n.input)]
    names += [producer[n.input[0]].name for n in graph.node if n.op_type == "Softmax" and n.input[0] in producer]
    return [name for name in dict.fromkeys(names) if name]


_WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _edge_layers(graph: Any) -> list[str]:
    """Names of the first and last nodes (graph order) of an ONNX graph that multiply by a stored
    weight: the ONNX counterpart of the model's protected input and output layers."""
    weights = {init.name for init in graph.initializer}
    weighted = [n.name for n in graph.node if n.op_type in _WEIGHTED_OPS and any(i in weights for i in n.input)]
    return list(dict.fromkeys(weighted[:1] + weighted[-1:]))
