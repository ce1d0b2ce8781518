"""Type-changing resize for torch-level programs: shrink one dimension of a value and carry the
smaller type forward through the consumers that can compute on it.

GEVO-ML's resize "breaks fixed tensor sizes": when a value loses entries along one dimension,
the ops that read it can often run on the smaller tensor too, which is what makes the edit save
compute (it prunes channels, rows or spatial positions at the IR level). `narrow` slices the
value (centered, as shape repair does everywhere), then walks its uses:

- an op with a rule below *absorbs* the smaller operand: it slices its other operands to match
  (the same centered entries, so channels stay aligned), and either keeps its result type or
  gets a smaller result type, whose uses are walked in turn;
- any other use gets the value padded back to the original extent with the edit's fill
  constant, exactly like the type-preserving resize.

Rules (torch dialect):

- elementwise ops (`ELEMENTWISE`), with numpy broadcasting of the other tensor operands;
- ``torch.aten.conv2d`` / ``torch.aten.convolution`` (not transposed): batch and spatial input
  dims (output size recomputed from kernel, stride, padding, dilation); input channels of a
  dense conv (the weight's input channels are sliced) or of a depthwise conv (weight, bias and
  ``groups`` follow); output channels of a dense conv's weight (bias follows); input channels
  of a dense conv's weight (the input is sliced);
- ``torch.aten.linear`` and ``torch.aten.mm``: the contracted dim is sliced on the other side;
  a free dim becomes a smaller result dim (a linear layer's bias counts as its weight's rows);
- ``torch.aten.batch_norm``: channel dim (the four per-channel vectors follow);
- pooling (``adaptive_avg_pool*``, ``max_pool*``, ``avg_pool*``): batch and channel dims; an
  adaptive pool to size 1 also absorbs a spatial dim;
- ``view`` / ``reshape`` / ``flatten.using_ints`` that only add or drop size-1 dims (a flatten
  after global pooling): the dim keeps its place, and the view's size list is rewritten.

Every op `narrow` creates is a repair op (no UID), so it is never an edit target.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

from iree.compiler import ir

from evoforge.mlir import irtools
from evoforge.mlir.edits import EditError

ELEMENTWISE = frozenset({
    "torch.aten.add.Tensor", "torch.aten.sub.Tensor", "torch.aten.mul.Tensor", "torch.aten.div.Tensor",
    "torch.aten.add.Scalar", "torch.aten.sub.Scalar", "torch.aten.mul.Scalar", "torch.aten.div.Scalar",
    "torch.aten.maximum", "torch.aten.minimum", "torch.aten.where.self", "torch.aten.pow.Tensor_Scalar",
    "torch.aten.relu", "torch.aten.relu6", "torch.aten.hardtanh", "torch.aten.leaky_relu", "torch.aten.elu",
    "torch.aten.gelu", "torch.aten.silu", "torch.aten.sigmoid", "torch.aten.tanh", "torch.aten.hardswish",
    "torch.aten.hardsigmoid", "torch.aten.clamp", "torch.aten.neg", "torch.aten.abs", "torch.aten.exp",
    "torch.aten.log", "torch.aten.sqrt", "torch.aten.rsqrt", "torch.aten.reciprocal", "torch.aten.erf",
    "torch.aten.dropout", "torch.aten.clone", "torch.aten.contiguous", "torch.aten.to.dtype",
    "torch.prims.convert_element_type",
})
"""Torch ops whose result is their tensor operands broadcast together, entry by entry."""

NARROWED_ATTR = "evoforge.narrowed"
"""Marks the slice a type-changing resize starts from."""
_POOLS = ("torch.aten.adaptive_avg_pool", "torch.aten.max_pool", "torch.aten.avg_pool")
_SHAPE = re.compile(r"^(!torch\.vtensor<\[)([0-9,]*)(\].*)$")


@dataclasses.dataclass(frozen=True)
class Narrowed:
    """A value whose type lost entries along ``dim``: it had ``old`` extents (and type
    ``old_type``), it now has ``size`` entries there."""

    value: ir.Value
    old_type: ir.Type
    old: tuple[int, ...]
    dim: int
    size: int
    keep: tuple[int, ...] = ()
    """The kept indices along ``dim`` (empty: the centered ``size`` entries)."""


@dataclasses.dataclass
class NarrowReport:
    """What `narrow` did: ops that absorbed a smaller operand, and uses padded back."""

    absorbed: list[str] = dataclasses.field(default_factory=list)
    padded_back: int = 0


def torch_type_with(t: ir.Type, shape: Sequence[int]) -> ir.Type:
    """The ``!torch.vtensor`` type ``t`` with its shape replaced by ``shape``."""
    m = _SHAPE.match(str(t))
    if m is None:
        raise EditError(f"type {t} is not a statically shaped torch tensor")
    return ir.Type.parse(f"{m.group(1)}{','.join(str(n) for n in shape)}{m.group(3)}")


def _shape(v: ir.Value) -> tuple[int, ...] | None:
    info = irtools.tensor_info(v.type)
    return info.shape if info is not None and info.family == "torch" else None


def _with_dim(shape: Sequence[int], dim: int, size: int) -> tuple[int, ...]:
    return tuple(size if d == dim else n for d, n in enumerate(shape))


def _slice(v: ir.Value, dim: int, size: int, ip: ir.InsertionPoint, keep: Sequence[int] = ()) -> ir.Value:
    """``v`` cut to its centered ``size`` entries along ``dim``, or to the entries ``keep``
    (gathered with ``torch.aten.index_select``), as a new torch value."""
    shape = _with_dim(_shape(v) or (), dim, size)
    if not keep:
        return irtools.convert(v, [shape], torch_type_with(v.type, shape), 0, ip)
    import numpy as np

    index_type = ir.RankedTensorType.get([len(keep)], ir.IntegerType.get_signed(64))
    indices = ir.DenseElementsAttr.get(np.asarray(keep, dtype=np.int64), type=index_type)
    literal = ir.Operation.create("torch.vtensor.literal", results=[ir.Type.parse(f"!torch.vtensor<[{len(keep)}],si64>")],
                                  attributes={"value": indices}, ip=ip)
    irtools.mark_repair(literal.results[0])
    gather = ir.Operation.create("torch.aten.index_select", results=[torch_type_with(v.type, shape)],
                                 operands=[v, _constant_int(dim, ip), literal.results[0]], ip=ip)
    return irtools.mark_repair(gather.results[0])


def _defined_by(v: ir.Value, name: str) -> ir.Operation | None:
    """The op named ``name`` that defines ``v``, else None."""
    op = v.owner.operation if isinstance(v, ir.OpResult) else None
    return op if op is not None and op.name == name else None


def _int_value(v: ir.Value) -> int | None:
    op = _defined_by(v, "torch.constant.int")
    return None if op is None else int(ir.IntegerAttr(op.attributes["value"]).value)


def _bool_value(v: ir.Value) -> bool | None:
    op = _defined_by(v, "torch.constant.bool")
    return None if op is None else bool(ir.BoolAttr(op.attributes["value"]).value)


def _int_list(v: ir.Value) -> list[int] | None:
    op = _defined_by(v, "torch.prim.ListConstruct")
    if op is None:
        return None
    values = []
    for o in op.operands:
        x = _int_value(o)
        if x is None:
            return None
        values.append(x)
    return values


def _constant_int(value: int, ip: ir.InsertionPoint) -> ir.Value:
    op = ir.Operation.create("torch.constant.int", results=[ir.Type.parse("!torch.int")],
                             attributes={"value": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)}, ip=ip)
    return irtools.mark_repair(op.results[0])


@dataclasses.dataclass
class _Plan:
    """How an op absorbs a narrowed operand: operands to slice (index, dim), operands to
    replace by new int constants or int lists (index, value) and result dims that shrink. Rules only
    inspect the op and return a plan (or None); `_carry_out` applies it."""

    slices: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    ints: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    int_lists: list[tuple[int, list[int]]] = dataclasses.field(default_factory=list)
    results: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)  # (result, dim, new size)


_Rule = Callable[[ir.Operation, list[int], Narrowed], "_Plan | None"]


def _operand_shapes(op: ir.Operation, slots: list[int], n: Narrowed, count: int) -> list[tuple[int, ...] | None]:
    """Shapes of the first ``count`` operands as they were before ``n`` was narrowed."""
    return [n.old if i in slots else _shape(op.operands[i]) for i in range(count)]


def _elementwise(op: ir.Operation, slots: list[int], n: Narrowed) -> _Plan | None:
    if len(op.results) != 1:
        return None
    res = _shape(op.results[0])
    if res is None:
        return None
    rdim = n.dim + len(res) - len(n.old)
    if rdim < 0 or res[rdim] != n.old[n.dim]:
        return None
    plan = _Plan(results=[(0, rdim, n.size)])
    for i, o in enumerate(op.operands):
        shape = _shape(o)
        if i in slots or shape is None:
            continue
        od = rdim - (len(res) - len(shape))
        if od < 0 or shape[od] == 1:
            continue
        if shape[od] != n.old[n.dim]:
            return None
        plan.slices.append((i, od))
    return plan


def _conv(op: ir.Operation, slots: list[int], n: Narrowed) -> _Plan | None:
    convolution = op.name == "torch.aten.convolution"
    if convolution and _bool_value(op.operands[6]) is not False:  # transposed
        return None
    groups_at = 8 if convolution else 6
    x, w = _operand_shapes(op, slots, n, 2)
    groups = _int_value(op.operands[groups_at])
    res = _shape(op.results[0])
    if x is None or w is None or res is None or groups is None or len(slots) != 1:
        return None
    has_bias = _shape(op.operands[2]) is not None
    slot, d = slots[0], n.dim
    if slot == 0:
        if d == 0:
            return _Plan(results=[(0, 0, n.size)])
        if d == 1 and groups == 1:
            return _Plan(slices=[(1, 1)])
        if d == 1 and groups == x[1] == w[0] and w[1] == 1:
            return _Plan(slices=[(1, 0)] + ([(2, 0)] if has_bias else []), ints=[(groups_at, n.size)],
                         results=[(0, 1, n.size)])
        if d >= 2:
            stride, padding, dilation = (_int_list(op.operands[k]) for k in (3, 4, 5))
            if stride is None or padding is None or dilation is None:
                return None
            k = d - 2
            if not (k < len(stride) and k < len(padding) and k < len(dilation)):
                return None
            out = (n.size + 2 * padding[k] - dilation[k] * (w[d] - 1) - 1) // stride[k] + 1
            if out < 1:
                return None
            return _Plan(results=[(0, d, out)] if out != res[d] else [])
        return None
    if slot == 1 and groups == 1:
        if d == 0:
            return _Plan(slices=[(2, 0)] if has_bias else [], results=[(0, 1, n.size)])
        if d == 1:
            return _Plan(slices=[(0, 1)])
    return None


def _linear(op: ir.Operation, slots: list[int], n: Narrowed) -> _Plan | None:
    """linear(x, w[out, in], bias) and mm(a, b[in, out])."""
    if len(slots) != 1:
        return None
    a, b = _operand_shapes(op, slots, n, 2)
    if a is None or b is None or len(b) != 2:
        return None
    linear = op.name == "torch.aten.linear"
    b_in = 1 if linear else 0  # the contracted dim of the second operand
    last = len(a) - 1
    slot, d = slots[0], n.dim
    if slot == 2:  # linear's bias: the weight's rows follow, and the outputs with them
        return _Plan(slices=[(1, 0)], results=[(0, last, n.size)]) if d == 0 else None
    if slot == 0:
        if d == last:
            return _Plan(slices=[(1, b_in)])
        return _Plan(results=[(0, d, n.size)])
    if d == b_in:
        return _Plan(slices=[(0, last)])
    bias = [(2, 0)] if linear and _shape(op.operands[2]) is not None else []
    return _Plan(slices=bias, results=[(0, last, n.size)])


def _batch_norm(op: ir.Operation, slots: list[int], n: Narrowed) -> _Plan | None:
    if slots != [0]:
        return None
    if n.dim == 1:
        return _Plan(slices=[(i, 0) for i in range(1, 5) if _shape(op.operands[i]) is not None],
                     results=[(0, 1, n.size)])
    return _Plan(results=[(0, n.dim, n.size)])


def _pool(op: ir.Operation, slots: list[int], n: Narrowed) -> _Plan | None:
    """Pools over the last 1, 2 or 3 dims (from the op name); the leading dims pass through."""
    res = _shape(op.results[0])
    m = re.search(r"pool([123])d", op.name)
    if slots != [0] or res is None or m is None or len(res) != len(n.old):
        return None
    if n.dim < len(n.old) - int(m.group(1)):
        return _Plan(results=[(i, n.dim, n.size) for i in range(len(op.results)) if _shape(op.results[i]) == res])
    if op.name.startswith("torch.aten.adaptive_avg_pool") and res[n.dim] == 1:
        return _Plan()
    return None


def _reshape(op: ir.Operation, slots: list[int], n: Narrowed) -> _Plan | None:
    """view / reshape / flatten that only add or drop size-1 dims around the narrowed one (as a
    flatten after global pooling does): the narrowed dim keeps its place among the others."""
    res = _shape(op.results[0])
    if slots != [0] or res is None:
        return None
    kept_in = [d for d, size in enumerate(n.old) if size != 1]
    kept_out = [d for d, size in enumerate(res) if size != 1]
    if [n.old[d] for d in kept_in] != [res[d] for d in kept_out]:
        return None
    rdim = kept_out[kept_in.index(n.dim)]
    new = list(_with_dim(res, rdim, n.size))
    if op.name == "torch.aten.flatten.using_ints":
        return _Plan(results=[(0, rdim, n.size)])
    if _int_list(op.operands[1]) is None:
        return None
    return _Plan(int_lists=[(1, new)], results=[(0, rdim, n.size)])


def _rule(op: ir.Operation) -> _Rule | None:
    name = op.name
    if name in ELEMENTWISE:
        return _elementwise
    if name in ("torch.aten.conv2d", "torch.aten.convolution"):
        return _conv
    if name in ("torch.aten.linear", "torch.aten.mm"):
        return _linear
    if name == "torch.aten.batch_norm":
        return _batch_norm
    if name.startswith(_POOLS):
        return _pool
    if name in ("torch.aten.view", "torch.aten.reshape", "torch.aten.flatten.using_ints"):
        return _reshape
    return None


def _users(value: ir.Value) -> dict[ir.Operation, list[int]]:
    """The ops that read ``value``, each with the operand slots it reads it in."""
    users: dict[ir.Operation, list[int]] = {}
    for use in value.uses:
        users.setdefault(use.owner.operation, []).append(use.operand_number)
    return users


def _changes_extent(plan: _Plan, n: Narrowed) -> bool:
    """True when the plan gives a result another extent than ``n``'s (kept indices cannot follow)."""
    return any(size != n.size for _, _, size in plan.results)


def _carry_out(op: ir.Operation, plan: _Plan, n: Narrowed) -> list[Narrowed]:
    ip = ir.InsertionPoint(op)
    if n.keep and _changes_extent(plan, n):
        raise EditError(f"{op.name} changes the narrowed extent, so the kept indices cannot follow")
    for i, d in plan.slices:
        op.operands[i] = _slice(op.operands[i], d, n.size, ip, n.keep)
    for i, value in plan.ints:
        op.operands[i] = _constant_int(value, ip)
    for i, values in plan.int_lists:
        items = [_constant_int(v, ip) for v in values]
        lst = ir.Operation.create("torch.prim.ListConstruct", results=[ir.Type.parse("!torch.list<int>")], operands=items, ip=ip)
        op.operands[i] = irtools.mark_repair(lst.results[0])
    out = []
    for r, d, size in plan.results:
        res = op.results[r]
        old_type = res.type
        old = _shape(res)
        assert old is not None
        res.set_type(torch_type_with(old_type, _with_dim(old, d, size)))
        out.append(Narrowed(res, old_type, old, d, size, n.keep))
    return out


def _narrowed_view(value: ir.Value) -> ir.Value:
    """The output of an earlier narrowing's slice when that slice is the value's only use
    (so resizing a value twice narrows it in two dims), else ``value``."""
    while True:
        uses = list(value.uses)
        op = uses[0].owner.operation if len(uses) == 1 else None
        for _ in range(3):  # to_builtin_tensor -> extract_slice -> from_builtin_tensor
            if op is None or irtools.REPAIR_ATTR not in op.attributes or len(op.results) != 1:
                return value
            if NARROWED_ATTR in op.attributes:
                value = op.results[0]
                break
            nxt = list(op.results[0].uses)
            op = nxt[0].owner.operation if len(nxt) == 1 else None
        else:
            return value


def can_carry(value: ir.Value) -> bool:
    """True when some consumer of ``value`` (after earlier narrowings) has a rule, so that a
    type-changing resize of it can save work rather than only pad back."""
    if _shape(value) is None:
        return False
    return any(_rule(u.owner.operation) is not None for u in _narrowed_view(value).uses)


def carries_kept(value: ir.Value, dim: int) -> bool:
    """True when a narrowing of ``value`` along ``dim`` that keeps chosen indices can be carried
    through every op that reads it, transitively (kept indices are never padded back): a dry run
    of `narrow`'s walk on the unchanged program, where each op is judged by the shapes it has now.
    A cheap filter for drawing such edits; `narrow` itself decides."""
    shape = _shape(value)
    if shape is None or not 0 <= dim < len(shape) or shape[dim] < 2:
        return False
    work = [(_narrowed_view(value), dim)]
    seen: set[tuple[ir.Value, int]] = set()
    while work:
        v, d = work.pop()
        if (v, d) in seen:
            continue
        seen.add((v, d))
        old = _shape(v)
        if old is None:
            return False
        n = Narrowed(v, v.type, old, d, old[d] - 1, tuple(range(old[d] - 1)))
        for user, slots in _users(v).items():
            rule = _rule(user)
            plan = rule(user, sorted(slots), n) if rule is not None else None
            if plan is None or _changes_extent(plan, n):
                return False
            work.extend((user.results[r], rd) for r, rd, _ in plan.results)
    return True


def narrow(value: ir.Value, dim: int, size: int, fill: int, keep: Sequence[int] = ()) -> NarrowReport:
    """Cut ``value`` (a torch tensor) to its centered ``size`` entries along ``dim`` (or to the
    entries ``keep``) and carry the smaller type through every consumer with a rule; other uses
    read it padded back with ``fill`` (centered cuts only: kept indices must be carried by every
    consumer). Raises `EditError` when ``value`` is not a torch tensor, has uses outside its
    block, or ``keep`` is not ``size`` ascending indices within the extent."""
    if _shape(value) is None:
        raise EditError(f"a type-changing resize needs a torch tensor value, not {value.type}")
    value = _narrowed_view(value)
    shape = _shape(value)
    assert shape is not None
    if not 1 <= size < shape[dim]:
        raise EditError(f"a value of type {value.type} cannot shrink to {size} along dim {dim}")
    if keep and (len(keep) != size or list(keep) != sorted(set(keep)) or keep[0] < 0 or keep[-1] >= shape[dim]):
        raise EditError(f"keep must hold {size} ascending indices below {shape[dim]}, got {list(keep)[:8]}")
    home = value.owner.operation.block if isinstance(value, ir.OpResult) else ir.BlockArgument(value).owner
    uses = [(u.owner.operation, u.operand_number) for u in value.uses]
    anchors = [a for user, _ in uses if (a := irtools.ancestor_in(user, home)) is not None]
    if len(anchors) != len(uses):
        raise EditError("a use lies outside the defining block")
    if not uses:
        return NarrowReport()
    first = anchors[0]
    for a in anchors[1:]:
        if a.is_before_in_block(first):
            first = a
    sliced = _slice(value, dim, size, ir.InsertionPoint(first), keep)
    sliced.owner.operation.attributes[NARROWED_ATTR] = ir.UnitAttr.get()
    for user, i in uses:
        user.operands[i] = sliced
    report = NarrowReport()
    work = [Narrowed(sliced, value.type, shape, dim, size, tuple(keep))]
    while work:
        n = work.pop(0)
        for user, slots in _users(n.value).items():
            rule = _rule(user)
            plan = rule(user, sorted(slots), n) if rule is not None else None
            if plan is not None:
                work.extend(_carry_out(user, plan, n))
                report.absorbed.append(user.name)
                continue
            anchor = irtools.ancestor_in(user, home)
            if anchor is None:
                raise EditError("a use lies outside the defining block")
            if n.keep:
                raise EditError(f"{user.name} cannot compute on the kept entries, and they are not padded back")
            for i in slots:
                user.operands[i] = irtools.convert(n.value, [n.old], n.old_type, fill, ir.InsertionPoint(anchor))
                report.padded_back += 1
    return report
