"""MLIR helpers shared by the loaders and the edit operators: UIDs, value names, types,
dominance, candidate values and shape repair. Imports IREE's MLIR bindings at module load;
only the GEVO-ML modules import this one.

Shape repair (GEVO-ML's TensorReshape on tensor/linalg ops) converts a value of one static
tensor type into another of the same element type: centered `tensor.extract_slice` where a
dimension is too large, `tensor.collapse_shape` of size-1 leading dims where the rank is too
large, centered `tensor.pad` with a constant 0 or 1 where a dimension is too small, and
`linalg.broadcast` of new leading dims where the rank is too small. Torch-dialect values are
bridged through ``torch_c.to_builtin_tensor`` / ``torch_c.from_builtin_tensor``. Every op the
repair inserts carries the unit attribute ``evoforge.repair`` and no UID, so repair ops are
never edit targets nor replacement values.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import numpy as np
from iree.compiler import ir
from iree.compiler.dialects import arith, linalg, tensor

from evoforge.mlir.edits import EditError

UID_ATTR = "evoforge.uid"
REPAIR_ATTR = "evoforge.repair"
FUNC_OPS = ("func.func", "util.func")
_VTENSOR = re.compile(r"^!torch\.vtensor<\[([0-9,]*)\],([a-z0-9]+)>$")


def new_context() -> ir.Context:
    """A fresh MLIR context with every IREE dialect (torch included) registered."""
    return ir.Context()


def mlir_error_line(exc: Exception) -> str:
    """The first diagnostic of an MLIR error as one line."""
    diags = getattr(exc, "error_diagnostics", None)
    if diags:
        d = diags[0]
        return f"{d.message} at {d.location}".replace("\n", " ")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:2])[:400]


def find_function(module: ir.Module, entry: str) -> ir.Operation:
    """The function op named ``entry``; `EditError` if absent."""
    for op in module.body.operations:
        op = op.operation
        if op.name in FUNC_OPS and ir.StringAttr(op.attributes["sym_name"]).value == entry:
            return op
    raise EditError(f"entry function @{entry} is not in the program")


def walk(root: ir.Operation) -> list[ir.Operation]:
    """All ops nested in ``root`` in pre-order, without ``root`` itself."""
    out: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        out.append(op.operation)
        return ir.WalkResult.ADVANCE

    root.walk(visit, ir.WalkOrder.PRE_ORDER)
    return out[1:]


def uid_of(op: ir.Operation) -> str:
    """The op's UID, or "" for untagged (repair) ops."""
    attrs = op.operation.attributes
    return ir.StringAttr(attrs[UID_ATTR]).value if UID_ATTR in attrs else ""


def set_uid(op: ir.Operation, uid: str) -> None:
    op.operation.attributes[UID_ATTR] = ir.StringAttr.get(uid)


def tag_uids(fn: ir.Operation) -> int:
    """Tag every op inside ``fn`` with ``U0, U1, ...`` in pre-order; returns the count."""
    ops = walk(fn)
    for i, op in enumerate(ops):
        set_uid(op, f"U{i}")
    return len(ops)


def uid_index(fn: ir.Operation) -> dict[str, ir.Operation]:
    """UID -> op for every tagged op inside ``fn``."""
    return {u: op for op in walk(fn) if (u := uid_of(op))}


def is_terminator(op: ir.Operation) -> bool:
    """True for block terminators (the last op of its block, with no results)."""
    op = op.operation
    ops = op.block.operations
    return len(op.results) == 0 and ops[len(ops) - 1].operation == op


# ----------------------------------------------------------------------------------------- types


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A static tensor type: ``family`` "builtin" (``tensor<..>``) or "torch" (``!torch.vtensor``),
    its shape and its builtin element type text (``f32``, ``i64``, ...)."""

    family: str
    shape: tuple[int, ...]
    elem: str


def tensor_info(t: ir.Type) -> TensorInfo | None:
    """`TensorInfo` of a statically shaped tensor type, else None."""
    if isinstance(t, ir.RankedTensorType):
        if not t.has_static_shape:
            return None
        return TensorInfo("builtin", tuple(t.shape), str(t.element_type))
    m = _VTENSOR.match(str(t))
    if m is None or m.group(2).startswith("ui") or m.group(2).startswith("q"):
        return None
    shape = tuple(int(s) for s in m.group(1).split(",")) if m.group(1) else ()
    elem = m.group(2)
    return TensorInfo("torch", shape, "i" + elem[2:] if elem.startswith("si") else elem)


_TORCH_CONVOLUTION = re.compile(r"^torch\.aten\.(_?convolution|conv[123]d)$")
_TORCH_MATMUL = {"torch.aten.mm": 0, "torch.aten.bmm": 0, "torch.aten.matmul": 0, "torch.aten.addmm": 1}
_LINALG_CONVOLUTION = re.compile(r"^linalg\.(depthwise_)?conv_\w+_(?P<filter>[a-z]+)$")


def op_cost(op: ir.Operation) -> float:
    """Estimated multiply-accumulates of one op (for weighting edit targets, not for timing):
    the largest result's element count, times the contraction length for convolutions and
    matrix products (torch level: ``convolution``, ``conv1d``-``conv3d``, ``mm``, ``bmm``,
    ``matmul``, ``addmm``, ``linear``; linalg level: the named ``conv_*``, ``depthwise_conv_*``,
    ``matmul`` and ``batch_matmul`` ops). Ops without a static tensor result cost 0."""
    out = max((int(np.prod(i.shape)) for r in op.results if (i := tensor_info(r.type))), default=0)
    shapes = [i.shape if (i := tensor_info(o.type)) else None for o in op.operands]
    name = op.name
    length = 1
    if _TORCH_CONVOLUTION.match(name) and len(shapes) > 1 and shapes[1]:
        length = int(np.prod(shapes[1][1:]))  # weight [out, in / groups, *kernel]
    elif name == "torch.aten.linear" and len(shapes) > 1 and shapes[1]:
        length = shapes[1][-1]  # weight [out, in]
    elif name in _TORCH_MATMUL and len(shapes) > _TORCH_MATMUL[name] and (left := shapes[_TORCH_MATMUL[name]]):
        length = left[-1]
    elif name in ("linalg.matmul", "linalg.batch_matmul") and shapes and shapes[0]:
        length = shapes[0][-1]
    elif (m := _LINALG_CONVOLUTION.match(name)) and len(shapes) > 1 and shapes[1] and len(shapes[1]) == len(m["filter"]):
        layout, filt = m["filter"], shapes[1]
        channel = layout.index("f") if "f" in layout else layout.index("c")  # the output-channel dim
        length = int(np.prod(filt)) // max(1, filt[channel])
    return float(out * max(1, length))


def is_scalar(t: ir.Type) -> bool:
    return isinstance(t, (ir.IntegerType, ir.FloatType, ir.IndexType))


def is_mutable_type(t: ir.Type) -> bool:
    """Values GEVO-ML edits: static tensors and builtin scalars."""
    return tensor_info(t) is not None or is_scalar(t)


def compatible(src: ir.Type, dst: ir.Type) -> bool:
    """True when a value of type ``src`` can stand where ``dst`` is expected (after shape repair)."""
    if src == dst:
        return True
    a, b = tensor_info(src), tensor_info(dst)
    return a is not None and b is not None and a.family == b.family and a.elem == b.elem


def dtype_name(t: ir.Type) -> str:
    """numpy dtype name of a tensor type's elements (``float32``, ``int64``, ...)."""
    info = tensor_info(t)
    if info is None:
        raise EditError(f"type {t} is not a statically shaped tensor")
    names = {"f16": "float16", "f32": "float32", "f64": "float64", "bf16": "bfloat16", "i1": "bool",
             "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64"}
    return names.get(info.elem, info.elem)


def is_init_operand(op: ir.Operation, i: int) -> bool:
    """True when operand ``i`` of a linalg op is a destination (``outs``) operand. IREE cannot
    compile a function argument in that role (it would write into an input buffer)."""
    attrs = op.operation.attributes
    if not op.name.startswith("linalg.") or "operandSegmentSizes" not in attrs:
        return False
    return i >= int(list(ir.DenseI32ArrayAttr(attrs["operandSegmentSizes"]))[0])


def is_function_argument(v: ir.Value, fn: ir.Operation) -> bool:
    return isinstance(v, ir.BlockArgument) and ir.BlockArgument(v).owner.owner.operation == fn


# ----------------------------------------------------------------------------- values and names


def value_name(v: ir.Value, fn: ir.Operation) -> str:
    """The `ValueRef` string of ``v`` ("" when it has none, e.g. a repair op's result)."""
    if isinstance(v, ir.OpResult):
        uid = uid_of(v.owner.operation)
        return f"{uid}#{v.result_number}" if uid else ""
    arg = ir.BlockArgument(v)
    owner = arg.owner.owner.operation
    if owner == fn:
        return f"arg{arg.arg_number}"
    uid = uid_of(owner)
    if uid and owner.regions[0].blocks[0] == arg.owner:
        return f"{uid}^{arg.arg_number}"
    return ""


def resolve(name: str, fn: ir.Operation, index: dict[str, ir.Operation]) -> ir.Value:
    """The value named ``name``; `EditError` if it no longer exists."""
    try:
        if name.startswith("arg"):
            return fn.regions[0].blocks[0].arguments[int(name[3:])]
        if "#" in name:
            uid, i = name.split("#")
            return index[uid].results[int(i)]
        uid, i = name.split("^")
        return index[uid].regions[0].blocks[0].arguments[int(i)]
    except (KeyError, IndexError, ValueError):
        raise EditError(f"value {name} does not exist in this program") from None


def lookup(uid: str, index: dict[str, ir.Operation]) -> ir.Operation:
    try:
        return index[uid]
    except KeyError:
        raise EditError(f"op {uid} does not exist in this program (deleted by an earlier edit?)") from None


def ancestor_in(op: ir.Operation, block: ir.Block) -> ir.Operation | None:
    """``op`` or the op enclosing it that sits directly in ``block``, else None."""
    cur = op.operation
    while True:
        if cur.block == block:
            return cur
        parent = cur.parent
        if parent is None or parent.name in FUNC_OPS or parent.name == "builtin.module":
            return None
        cur = parent.operation


def dominates(v: ir.Value, op: ir.Operation) -> bool:
    """SSA dominance inside one function: ``v`` is an argument of a block enclosing ``op``, or
    its defining op precedes (the ancestor of) ``op`` in the defining block."""
    if isinstance(v, ir.OpResult):
        d = v.owner.operation
        anc = ancestor_in(op, d.block)
        return anc is not None and d.is_before_in_block(anc)
    return ancestor_in(op, ir.BlockArgument(v).owner) is not None


def is_static_parameter(v: ir.Value) -> bool:
    """True when ``v`` is a torch-level op's static parameter: a ``torch.constant.*`` or a
    ``torch.prim.ListConstruct`` of such (a convolution's strides, a dim, a flag). The op's result
    type was inferred from it, so another value in its place gives a program that verifies but that
    IREE refuses or computes wrongly; a copied op recomputes it instead (`recompute_before`)."""
    if not isinstance(v, ir.OpResult):
        return False
    op = v.owner.operation
    if len(op.regions) or not (op.name.startswith("torch.constant.") or op.name == "torch.prim.ListConstruct"):
        return False
    return all(is_static_parameter(o) for o in op.operands)


def recompute_before(v: ir.Value, op: ir.Operation, uid_prefix: str, done: dict[ir.Value, ir.Value]) -> ir.Value:
    """``v`` (`is_static_parameter`) usable at ``op``: itself where it dominates ``op``, else its
    constant ops cloned right before ``op``, tagged ``{uid_prefix}/{uid}``. ``done`` maps values
    already recomputed for this op, so that a constant two parameters share is cloned once."""
    if dominates(v, op):
        return v
    if v not in done:
        source = v.owner.operation
        operands = [recompute_before(o, op, uid_prefix, done) for o in source.operands]
        clone = source.clone(ip=ir.InsertionPoint(op)).operation
        for i, o in enumerate(operands):
            clone.operands[i] = o
        if (u := uid_of(clone)):
            set_uid(clone, f"{uid_prefix}/{u}")
        done[v] = clone.results[ir.OpResult(v).result_number]
    return done[v]


def dominating_values(op: ir.Operation, fn: ir.Operation) -> Iterator[ir.Value]:
    """Values usable by ``op``: arguments of every enclosing block and results of earlier
    tagged ops in them, innermost block first. `tensor.empty` results are never offered
    (their contents are undefined)."""
    cur = op.operation
    while True:
        block = cur.block
        yield from block.arguments
        for o in block.operations:
            o = o.operation
            if o == cur:
                break
            if uid_of(o) and o.name != "tensor.empty":
                yield from o.results
        parent = block.owner.operation
        if parent == fn:
            return
        cur = parent


# ---------------------------------------------------------------------------------- shape repair


def _index_attr(values: list[int]) -> ir.ArrayAttr:
    i64 = ir.IntegerType.get_signless(64)
    return ir.ArrayAttr.get([ir.IntegerAttr.get(i64, v) for v in values])


def mark_repair(v: ir.Value) -> ir.Value:
    """Tag the op defining ``v`` as a repair op (never an edit target or source); returns ``v``."""
    v.owner.operation.attributes[REPAIR_ATTR] = ir.UnitAttr.get()
    return v


def _fill_constant(elem: ir.Type, fill: int) -> ir.Operation:
    attr = ir.FloatAttr.get(elem, float(fill)) if isinstance(elem, ir.FloatType) else ir.IntegerAttr.get(elem, fill)
    return arith.ConstantOp(elem, attr)


def _reshape_builtin(v: ir.Value, target: tuple[int, ...], fill: int, ip: ir.InsertionPoint) -> ir.Value:
    """Convert builtin tensor ``v`` to shape ``target`` (same element type); see module doc."""
    t = ir.RankedTensorType(v.type)
    elem, src = t.element_type, tuple(t.shape)
    if src == target:
        return v
    ra, rb = len(src), len(target)
    k = max(ra - rb, 0)
    m = min(ra, rb)
    tail_t = target[rb - m:]
    sliced = (1,) * k + tuple(min(src[k + i], tail_t[i]) for i in range(m))
    if sliced != src:
        offsets = [(a - b) // 2 for a, b in zip(src, sliced)]
        v = mark_repair(tensor.extract_slice(ir.RankedTensorType.get(sliced, elem), v, [], [], [],
                                       offsets, list(sliced), [1] * ra, ip=ip))
    if k:
        groups = [list(range(k + 1))] + [[k + i] for i in range(1, m)] if m else []
        reassoc = ir.ArrayAttr.get([_index_attr(g) for g in groups])
        v = mark_repair(tensor.CollapseShapeOp(ir.RankedTensorType.get(sliced[k:], elem), v, reassoc, ip=ip).result)
    cur = sliced[k:]
    if cur != tail_t:
        lows = [(b - a) // 2 for a, b in zip(cur, tail_t)]
        highs = [b - a - lo for a, b, lo in zip(cur, tail_t, lows)]
        pad = tensor.PadOp(ir.RankedTensorType.get(tail_t, elem), v, [], [], lows, highs, ip=ip)
        block = pad.regions[0].blocks.append(*([ir.IndexType.get()] * m))
        with ir.InsertionPoint(block):
            tensor.YieldOp(_fill_constant(elem, fill).result)
        v = mark_repair(pad.result)
    if rb > m:
        empty = mark_repair(tensor.EmptyOp(list(target), elem, ip=ip).result)
        with ip:
            b = linalg.broadcast(v, outs=[empty], dimensions=list(range(rb - m)))
        v = mark_repair(b.operation.results[0])
    return v


def convert(v: ir.Value, shapes: list[tuple[int, ...]], dst: ir.Type, fill: int, ip: ir.InsertionPoint) -> ir.Value:
    """Reshape ``v`` through each shape in ``shapes`` in turn and return a value of type ``dst``.

    ``shapes`` normally holds just ``dst``'s shape; `Resize` passes a shrunk shape first.
    Raises `EditError` when the types are not `compatible`.
    """
    if not compatible(v.type, dst):
        raise EditError(f"a value of type {v.type} cannot replace one of type {dst}")
    src = tensor_info(v.type)
    if src is None or (v.type == dst and shapes == [src.shape]):
        return v  # equal scalar types, or an identical tensor type
    elem = ir.Type.parse(src.elem)
    if src.family == "torch":
        builtin = ir.RankedTensorType.get(src.shape, elem)
        v = mark_repair(ir.Operation.create("torch_c.to_builtin_tensor", results=[builtin], operands=[v], ip=ip).results[0])
    for shape in shapes:
        v = _reshape_builtin(v, shape, fill, ip)
    if src.family == "torch":
        v = mark_repair(ir.Operation.create("torch_c.from_builtin_tensor", results=[dst], operands=[v], ip=ip).results[0])
    return v


def repair_to(v: ir.Value, dst: ir.Type, fill: int, ip: ir.InsertionPoint) -> ir.Value:
    """`convert` straight to ``dst``."""
    info = tensor_info(dst)
    return convert(v, [info.shape] if info else [], dst, fill, ip)


# ------------------------------------------------------------------------------- constant data

_RESOURCE = re.compile(r'^\s*"?([A-Za-z0-9_.$\-]+)"?\s*:\s*"0x([0-9A-Fa-f]*)"', re.MULTILINE)
_DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "bf16": None, "si64": np.int64, "si32": np.int32,
           "i64": np.int64, "i32": np.int32, "si8": np.int8, "i8": np.int8, "ui8": np.uint8, "i1": np.bool_}


def resource_blobs(text: str) -> dict[str, bytes]:
    """The ``dialect_resources`` blobs of a program's text by name (each without its 4-byte
    alignment header)."""
    start = text.rfind("{-#")
    if start < 0:
        return {}
    return {m.group(1): bytes.fromhex(m.group(2))[4:] for m in _RESOURCE.finditer(text, start)}


def weight_array(op: ir.Operation, blobs: dict[str, bytes]) -> np.ndarray | None:
    """The value of a constant weight as an array: a ``torch.vtensor.literal``, or a
    ``torch_c.from_builtin_tensor`` of a ``util.global.load`` of an immutable global (iree-turbine
    stores a module's parameters so), from a dense attribute or from ``blobs`` for a
    ``dense_resource``; None when it is neither or its element type or storage is not readable."""
    info = tensor_info(op.results[0].type) if len(op.results) == 1 else None
    if info is None:
        return None
    if op.name == "torch.vtensor.literal":
        attr = op.attributes["value"]
    elif (attr := _global_initial_value(op)) is None:
        return None
    if isinstance(attr, ir.DenseElementsAttr):
        return np.array(attr).reshape(info.shape)
    match = re.match(r"dense_resource<([^>]+)>\s*:\s*tensor<[0-9x]*x?([a-z0-9]+)>", str(attr))
    if match is None or match.group(1) not in blobs:
        return None
    dtype = _DTYPES.get(match.group(2))
    if dtype is None:
        return None
    data = np.frombuffer(blobs[match.group(1)], dtype=dtype)
    return data.reshape(info.shape) if data.size == int(np.prod(info.shape)) else None


def _global_initial_value(op: ir.Operation) -> ir.Attribute | None:
    """The initial value of the immutable ``util.global`` that ``op`` (a
    ``torch_c.from_builtin_tensor``) converts straight from a load of, or None."""
    if op.name != "torch_c.from_builtin_tensor" or not isinstance(op.operands[0], ir.OpResult):
        return None
    load = op.operands[0].owner
    if load.name != "util.global.load" or "global" not in load.attributes:
        return None
    name = ir.FlatSymbolRefAttr(load.attributes["global"]).value
    parent = load.parent
    while parent is not None and parent.name != "builtin.module":
        parent = parent.parent
    if parent is None:
        return None
    for candidate in parent.regions[0].blocks[0].operations:
        if candidate.name == "util.global" and ir.StringAttr(candidate.attributes["sym_name"]).value == name:
            if "is_mutable" in candidate.attributes or "initial_value" not in candidate.attributes:
                return None
            return candidate.attributes["initial_value"]
    return None