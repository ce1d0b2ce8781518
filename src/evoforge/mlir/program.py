"""`Program`: the pristine MLIR a GEVO-ML search edits, and its loaders.

A program is printed MLIR text whose entry function has every nested op tagged with a stable
string UID (attribute ``evoforge.uid = "U<n>"``, pre-order). Two levels are supported:

- ``"torch"``: torch-dialect (``func.func`` over ``!torch.vtensor``), one op per layer or tensor
  primitive, closest to the MHLO level of the GEVO-ML paper;
- ``"linalg"``: linalg-on-tensors at IREE's ``input`` phase (``util.func``), produced by IREE's
  ``torch-to-iree`` pipeline; every arithmetic detail (bias add, ReLU, BN) is its own op.

IREE, torch and onnx are imported inside the loaders only.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from evoforge.errors import ConfigError

if TYPE_CHECKING:
    import torch

Level = Literal["torch", "linalg"]
LEVELS: tuple[Level, ...] = ("torch", "linalg")


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Shape and numpy dtype name of one entry-function argument or result."""

    shape: tuple[int, ...]
    dtype: str


@dataclasses.dataclass(frozen=True)
class Program:
    """Pristine, UID-tagged MLIR text plus what a runner needs to call it.

    ``text`` parses and prints back to itself, so replaying no edits returns it unchanged.
    """

    text: str
    entry: str
    level: Level
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_type(self) -> str:
        """The ``--iree-input-type`` to compile this program with."""
        return "torch" if self.level == "torch" else "none"


def from_mlir(source: str | os.PathLike[str], *, level: Level | None = None, entry: str | None = None) -> Program:
    """Load torch-dialect or linalg-on-tensors MLIR (a path or the text itself).

    ``level=None`` keeps the program's own level; ``"linalg"`` lowers torch-dialect input with
    IREE's ``torch-to-iree`` pipeline; asking ``"torch"`` of linalg input is a `ConfigError`.
    ``entry`` defaults to the first public function. Unparsable input raises `ConfigError`.
    """
    from iree.compiler import ir

    from evoforge.mlir import irtools

    if level is not None and level not in LEVELS:
        raise ConfigError(f"level must be one of {list(LEVELS)}, but got {level!r}")
    text = _read_source(source)
    if "!torch." in text:
        text = with_lowerable_equivalents(text)
    with irtools.new_context(), ir.Location.unknown():
        try:
            module = ir.Module.parse(text)
        except ir.MLIRError as exc:
            raise ConfigError(f"cannot parse MLIR: {irtools.mlir_error_line(exc)}") from None
        own: Level = "torch" if "!torch." in text else "linalg"
        if level == "torch" and own == "linalg":
            raise ConfigError("the program is already linalg-on-tensors; load it with level='linalg' or None")
        if "torch.operator \"onnx." in text:
            _run_pipeline(module, "builtin.module(torch-onnx-to-torch-backend-pipeline)")
        if (level or own) == "linalg" and own == "torch":
            _run_pipeline(module, "builtin.module(torch-to-iree{emit-async-entry-points=false})")
            own = "linalg"
        fn = _entry_function(module, entry)
        for op in irtools.walk(fn):
            if irtools.UID_ATTR in op.attributes:
                del op.attributes[irtools.UID_ATTR]
        irtools.tag_uids(fn)
        fn_type = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
        inputs = tuple(_spec(t) for t in fn_type.inputs)
        outputs = tuple(_spec(t) for t in fn_type.results)
        name = ir.StringAttr(fn.attributes["sym_name"]).value
        try:
            module.operation.verify()
        except ir.MLIRError as exc:
            raise ConfigError(f"the program does not verify: {irtools.mlir_error_line(exc)}") from None
        printed = str(module)
    return Program(text=printed, entry=name, level=own, inputs=inputs, outputs=outputs)


def from_torch(module: torch.nn.Module, example_input: Any, *, level: Level = "torch") -> Program:
    """Export ``module`` with ``iree.turbine.aot.export`` at the example input(s) and load it.

    ``example_input`` is a tensor or a tuple of tensors (positional arguments). The module is
    exported as it is: call ``.eval()`` first for an inference program.
    """
    import iree.turbine.aot as aot

    from evoforge.mlir.window_ops import exact_window_inputs
    from evoforge.quiet import quiet_torch_internals

    args = example_input if isinstance(example_input, tuple) else (example_input,)
    module = exact_window_inputs(module, tuple(args))  # IREE 3.13 rejects some single-output window ops
    try:
        with quiet_torch_internals():  # torch.export's notices about the model's side effects and pytree
            exported = aot.export(module, args=tuple(args))
    except Exception as exc:  # the exporter raises many unrelated types
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"iree.turbine could not export the model: {type(exc).__name__}: {first}") from exc
    return from_mlir(str(exported.mlir_module), level=level)


ONNX_EXPORTERS = ("torchscript", "dynamo")
"""torch's ONNX exporters in the order the ONNX route tries them: the TorchScript-based one is 10-30x
faster on small models but deprecated upstream; the dynamo one (with its optimizer, which folds the
weights into constants IREE's importer needs) takes what the other cannot, and will outlive it."""


def from_module(module: torch.nn.Module, example_input: Any, *, level: Level = "torch") -> tuple[Program, dict[str, str]]:
    """A prediction model's program and how it was made: ``{"exporter": "iree-turbine"}``, or
    ``{"exporter": "onnx", "onnx_exporter": ..., "exporter_reason": ...}`` (which of
    `ONNX_EXPORTERS` made it, and why iree-turbine's program did not do).

    iree-turbine first (`from_torch`). When IREE cannot lower what it exported (an op with no
    lowering in IREE, such as ``aten.gru.input``), the model goes through torch's ONNX exporters
    and IREE's ONNX importer instead, whose ops IREE lowers. `ConfigError` when no route gives a
    program IREE can lower, naming each route's reason.
    """
    program = from_torch(module, example_input, level="torch")
    problem = lowering_problem(program)
    record = {"exporter": "iree-turbine"}
    if problem is not None:
        reasons = {"iree-turbine": problem}
        for exporter in ONNX_EXPORTERS:
            try:
                candidate = _through_onnx(module, example_input, exporter)
            except Exception as exc:  # noqa: BLE001 - torch's exporters raise many unrelated types
                reasons[f"ONNX ({exporter})"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                continue
            reasons[f"ONNX ({exporter})"] = lowering_problem(candidate) or ""
            if not reasons[f"ONNX ({exporter})"]:
                program = candidate
                record = {"exporter": "onnx", "onnx_exporter": exporter,
                          "exporter_reason": f"IREE cannot lower iree-turbine's export: {problem}"}
                break
        else:
            said = "; ".join(f"{route}: {reason}" for route, reason in reasons.items())
            raise ConfigError(f"IREE cannot lower the model by any export route ({said}); replace those ops in the model, "
                              "or export it to ONNX or MLIR yourself and evolve that file")
    return (from_mlir(program.text, level="linalg") if level == "linalg" else program), record


def _through_onnx(module: torch.nn.Module, example_input: Any, exporter: str) -> Program:
    """``module`` exported with one of torch's `ONNX_EXPORTERS` at the example's static shapes, then
    imported with IREE's ONNX importer, at the torch level."""
    import torch

    from evoforge.quiet import quiet_onnx_converters, quiet_torch_internals

    args = example_input if isinstance(example_input, tuple) else (example_input,)
    with tempfile.TemporaryDirectory(prefix="evoforge-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        with quiet_torch_internals(), quiet_onnx_converters():  # tracer and deprecation notices; the lowering check decides
            if exporter == "dynamo":
                torch.onnx.export(module, tuple(args), str(path), dynamo=True, optimize=True, external_data=False,
                                  verbose=False)
            else:
                torch.onnx.export(module, tuple(args), str(path), dynamo=False, verbose=False)
        return from_onnx(path, level="torch")


def lowering_problem(program: Program) -> str | None:
    """Why IREE's input conversion (``torch-to-iree``) rejects a torch-level program, or None
    when it lowers (a linalg-level program is lowered already)."""
    if program.level != "torch":
        return None
    from iree.compiler import ir

    from evoforge.mlir import irtools

    with irtools.new_context(), ir.Location.unknown():
        module = ir.Module.parse(program.text)
        try:
            _run_pipeline(module, "builtin.module(torch-to-iree{emit-async-entry-points=false})")
        except ConfigError as exc:
            return str(exc).split(" failed: ", 1)[-1]
    return None


LOWERABLE_EQUIVALENTS = {"torch.aten.__and__.Tensor": "torch.aten.bitwise_and.Tensor"}
"""Torch-dialect ops IREE 3.13 has no lowering for, and the op that computes the same with the same
operands that it lowers. PyTorch's ``a & b`` on tensors is ``bitwise_and`` (transformers builds its
attention masks with it)."""


def with_lowerable_equivalents(text: str) -> str:
    """``text`` with each op of `LOWERABLE_EQUIVALENTS` renamed to its equivalent."""
    for name, equivalent in LOWERABLE_EQUIVALENTS.items():
        text = text.replace(f"{name} ", f"{equivalent} ").replace(f'"{name}"', f'"{equivalent}"')
    return text


def from_onnx(path: str | os.PathLike[str], *, level: Level = "torch") -> Program:
    """Import an ONNX file with IREE's ONNX importer (needs the ``onnx`` package) and load it."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportError("from_onnx needs the 'onnx' package: pip install onnx") from None
    src = Path(path)
    if not src.is_file():
        raise ConfigError(f"ONNX file {src} does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.mlir"
        proc = subprocess.run(
            [sys.executable, "-m", "iree.compiler.tools.import_onnx", str(src), "-o", str(out)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise ConfigError(f"IREE's ONNX importer failed on {src}: {last}")
        return from_mlir(out.read_text(), level=level)


def pin_onnx_shapes(
    source: str | os.PathLike[str], dest: str | os.PathLike[str], *,
    example_shapes: list[tuple[int, ...]] | None, batch_size: int,
) -> dict[str, list[int]]:
    """Write ``source`` to ``dest`` with every dynamic input dimension made static: the first
    (batch) to ``batch_size``, the others to ``example_shapes`` (the per-example shape of each
    input, in order); shapes inside the graph are inferred again. Returns the pinned inputs'
    shapes by name (empty when nothing was dynamic; ``dest`` is then not written). Raises
    `ConfigError` when a non-batch dimension is dynamic and no example shape fixes it."""
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX programs need the 'onnx' package: pip install onnx") from None
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # noqa: BLE001 - protobuf's decode errors and onnx's own
        raise ConfigError(f"cannot read {source} as an ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                          "give a model saved by torch.onnx.export or onnx.save") from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    pinned: dict[str, list[int]] = {}
    for k, inp in enumerate(i for i in graph.input if i.name not in initializers):
        dims = inp.type.tensor_type.shape.dim
        if not any(d.dim_value <= 0 for d in dims):
            continue
        for j, dim in enumerate(dims):
            if dim.dim_value > 0:
                continue
            if j == 0:
                value = batch_size
            elif example_shapes is not None and k < len(example_shapes) and j - 1 < len(example_shapes[k]):
                value = int(example_shapes[k][j - 1])
            else:
                raise ConfigError(
                    f"ONNX input {inp.name!r} has a dynamic dimension {j} ({dim.dim_param or '?'}); "
                    "give data (x_val rows of the real shape) so that it can be pinned"
                )
            dim.Clear()
            dim.dim_value = value
        pinned[inp.name] = [int(d.dim_value) for d in dims]
    if not pinned:
        return {}
    del graph.value_info[:]
    for out in graph.output:
        for dim in out.type.tensor_type.shape.dim:
            if dim.dim_value <= 0:
                dim.Clear()
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises its own error types
        raise ConfigError(f"shapes do not follow from the pinned inputs {pinned}: {str(exc).splitlines()[0]}") from None
    onnx.save(model, str(dest))
    return pinned


def _read_source(source: str | os.PathLike[str]) -> str:
    if isinstance(source, os.PathLike) or ("\n" not in source and source.endswith((".mlir", ".mlirbc"))):
        p = Path(source)
        if not p.is_file():
            raise ConfigError(f"MLIR file {p} does not exist")
        return p.read_text()
    return source


def _run_pipeline(module: Any, pipeline: str) -> None:
    from iree.compiler import ir, passmanager

    from evoforge.mlir import irtools

    try:
        passmanager.PassManager.parse(pipeline).run(module.operation)
    except ir.MLIRError as exc:
        raise ConfigError(f"lowering with {pipeline} failed: {irtools.mlir_error_line(exc)}") from None


def _entry_function(module: Any, entry: str | None) -> Any:
    from iree.compiler import ir

    from evoforge.mlir import irtools

    funcs = [op.operation for op in module.body.operations if op.operation.name in irtools.FUNC_OPS]
    for fn in funcs:
        name = ir.StringAttr(fn.attributes["sym_name"]).value
        private = "sym_visibility" in fn.attributes and ir.StringAttr(fn.attributes["sym_visibility"]).value == "private"
        if (entry is None and not private and not name.endswith("$async")) or name == entry:
            return fn
    names = [ir.StringAttr(f.attributes["sym_name"]).value for f in funcs]
    raise ConfigError(f"entry function {entry or '(first public)'} not found; functions: {names}; give a program with a "
                      "public func.func")


def _spec(t: Any) -> TensorSpec:
    from evoforge.mlir import irtools

    info = irtools.tensor_info(t)
    if info is None:
        raise ConfigError(f"entry function argument/result type {t} is not a statically shaped tensor; give the program "
                          "fixed shapes (export it with the batch size to compile for)")
    return TensorSpec(shape=info.shape, dtype=irtools.dtype_name(t))
