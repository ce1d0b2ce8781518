"""GEVO-ML operators: draw a random edit, replay an edit list, cross two edit lists over.

Replay (`apply_edits`) always starts from a fresh parse of the pristine program and applies the
edits in stored order; the result must verify. Use-def repair: a replacement value must
dominate the use (an argument of an enclosing block, or an earlier op in an enclosing block),
have the same element type (tensors) or the same type (scalars), and is reshaped to the
expected type by the repair ops of `evoforge.mlir.irtools`. Targets are ops with a UID that
are not terminators; repair ops carry no UID and so are never touched.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from iree.compiler import ir

from evoforge.errors import ConfigError
from evoforge.mlir import irtools, narrow
from evoforge.mlir.edits import (
    EDIT_KINDS,
    OPT_IN_KINDS,
    Copy,
    Delete,
    DeleteBlock,
    Edit,
    EditError,
    OperandReplace,
    Resize,
    Source,
    check_target_weighting,
)
from evoforge.mlir.program import Program

T = TypeVar("T")

COST_SHARE = 0.5
"""Under ``cost`` weighting, the share of the draw made in proportion to cost."""


class Session:
    """One parse of a program inside its own MLIR context; `apply` edits one at a time, then
    `verify` and `text`. Use as a context manager (it enters the context on creation)."""

    def __init__(self, program: Program, *, targets: str = "uniform", keep_examples_apart: bool = False) -> None:
        self.program = program
        self.targets = check_target_weighting(targets)
        """How `pick` draws what an edit touches (see `TARGET_WEIGHTINGS`)."""
        self.keep_examples_apart = keep_examples_apart
        """Whether draws leave out the choices that would read one example's values into another's
        place (`mixes_examples`)."""
        self._per_example: set[ir.Value] | None = None
        self._feeding: set[ir.Value] | None = None
        self._batch_size: int | None = None
        self.context = irtools.new_context()
        self._loc = ir.Location.unknown(self.context)
        self.context.__enter__()
        self._loc.__enter__()
        self.module = ir.Module.parse(program.text)
        self.fn = irtools.find_function(self.module, program.entry)
        self.last_narrowing: narrow.NarrowReport | None = None
        """What the last type-changing resize did (for explanations)."""
        self._blobs: dict[str, bytes] | None = None

    def close(self) -> None:
        self._loc.__exit__(None, None, None)
        self.context.__exit__(None, None, None)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def index(self) -> dict[str, ir.Operation]:
        return irtools.uid_index(self.fn)

    def constant(self, op: ir.Operation) -> np.ndarray | None:
        """The data of a constant weight (`irtools.weight_array`: a literal or an immutable
        global, inline or a resource blob of the program), or None when it cannot be read."""
        if self._blobs is None:
            self._blobs = irtools.resource_blobs(self.program.text)
        return irtools.weight_array(op, self._blobs)

    def apply(self, edit: Edit) -> None:
        _APPLY[type(edit)](self, edit)
        self._per_example = self._feeding = None  # the edited program's values differ

    def pick(self, rng: np.random.Generator, items: Sequence[T], cost: Callable[[T], float]) -> T:
        """One of ``items``: uniformly, or with ``targets="cost"`` from a mixture that is
        `COST_SHARE` in proportion to ``cost`` and the rest uniform (so cheap targets stay reachable)."""
        if self.targets == "uniform" or len(items) < 2:
            return _pick(rng, items)
        costs = np.array([cost(item) for item in items], dtype=np.float64)
        if not costs.sum() > 0:
            return _pick(rng, items)
        p = (1.0 - COST_SHARE) / len(items) + COST_SHARE * costs / costs.sum()
        return items[int(rng.choice(len(items), p=p / p.sum()))]

    def value_cost(self, v: ir.Value) -> float:
        """The estimated work that touches ``v``: its producer's and every user's `irtools.op_cost`."""
        producer = irtools.op_cost(v.owner.operation) if isinstance(v, ir.OpResult) else 0.0
        return producer + sum(irtools.op_cost(u.owner.operation) for u in v.uses)

    def per_example(self, v: ir.Value) -> bool:
        """True when ``v`` is a tensor that holds each example's own values: computed from the entry
        function's inputs (also inside and out of loops), or the initial value (a linalg ``outs``
        operand, a loop's carried init) of such a computation."""
        if self._per_example is None:
            self._per_example = _per_example_values(self.fn)
        return irtools.tensor_info(v.type) is not None and v in self._per_example

    def batch_dims(self, v: ir.Value) -> frozenset[int]:
        """Where the batch may sit in per-example tensor ``v``: dim 0 when its extent is the
        inputs' batch size (batch-first values), else every dim of that extent (a sequence-first
        value's dim 1), else dim 0 (the batch merged with another dim, as in ``[T*B, H]``)."""
        info = irtools.tensor_info(v.type)
        if info is None or not info.shape:
            return frozenset()
        if info.shape[0] == self.batch_size():
            return frozenset({0})
        return frozenset(d for d, n in enumerate(info.shape) if n == self.batch_size()) or frozenset({0})

    def batch_size(self) -> int:
        """The extent of the first input's dim 0 (0 for a scalar input)."""
        if self._batch_size is None:
            first = next((irtools.tensor_info(a.type) for a in self.fn.regions[0].blocks[0].arguments), None)
            self._batch_size = first.shape[0] if first is not None and first.shape else 0
        return self._batch_size

    def spread_batch_dims(self, v: ir.Value) -> frozenset[int]:
        """The dims of shared tensor ``v`` that run along the batch of the per-example values it
        feeds: every dim of the inputs' batch size, when ``v`` is computed (not constant data,
        `CONSTANT_OPS`, so a weight whose extent happens to equal the batch size is not spread)
        and per-example values are computed from it (`_feeding_values`). A class token expanded
        to the batch, a bias broadcast to it, an index over the examples: cropping such a dim
        gives some examples other values than the rest, by their place in the batch."""
        info = irtools.tensor_info(v.type)
        if info is None or not isinstance(v, ir.OpResult) or self.per_example(v) or v.owner.operation.name in CONSTANT_OPS:
            return frozenset()
        if self._feeding is None:
            assert self._per_example is not None  # filled by per_example above
            self._feeding = _feeding_values(self.fn, self._per_example)
        if v not in self._feeding:
            return frozenset()
        return frozenset(d for d, n in enumerate(info.shape) if n == self.batch_size())

    def mixes_examples(self, src: ir.Value, dst: ir.Value, *, reads_examples: bool | None = None) -> bool:
        """True when ``src``, shape-repaired into the place of ``dst`` (`irtools.convert`, which
        aligns trailing dims), would make an example's outputs depend on the other examples of its
        batch or on its place in it: per-example values handed to another example or to all of
        them (``dst`` does not hold per-example values, or the ranks or the batch extents
        (`batch_dims`) differ, so the repair slices, collapses or broadcasts across the batch), or
        shared values put where per-example ones (or shared ones spread along the batch,
        `spread_batch_dims`) were with a batch dim of ``dst`` covered rather than broadcast (each
        example would read a different part). Same rank and batch extents:
        cropped and padded in the other dims, example by example. ``reads_examples`` says whether
        ``src`` holds per-example values when the analysis cannot (a copy's result, made after it)."""
        a, b = irtools.tensor_info(src.type), irtools.tensor_info(dst.type)
        if a is None or b is None:
            return False
        if self.per_example(src) if reads_examples is None else reads_examples:
            if not self.per_example(dst) or len(a.shape) != len(b.shape):
                return True
            return any(a.shape[d] != b.shape[d] for d in self.batch_dims(src) | self.batch_dims(dst))
        lead = len(b.shape) - len(a.shape)  # dst dims before ``lead`` are broadcast, the rest read from src
        batch = self.batch_dims(dst) if self.per_example(dst) else self.spread_batch_dims(dst)
        return any(d >= lead and b.shape[d] != 1 for d in batch)

    def verify(self) -> None:
        try:
            self.module.operation.verify()
        except ir.MLIRError as exc:
            raise EditError(f"edited program does not verify: {irtools.mlir_error_line(exc)}") from None

    def text(self) -> str:
        return str(self.module)


def _per_example_values(fn: ir.Operation) -> set[ir.Value]:
    """The tensors of ``fn`` that hold per-example values (`Session.per_example`), to a fixed point:
    a loop's body may read the inputs only through the state it carries, whose initial value is a
    shared constant until the loop's results are known to be per-example."""
    values: set[ir.Value] = set(fn.regions[0].blocks[0].arguments)
    ops = [op for op in irtools.walk(fn) if op != fn]
    while True:
        known = len(values)
        for op in ops:  # forward: computed from the inputs
            linalg = op.name.startswith("linalg.")
            # a linalg op's ``outs`` are per-example only because its result is: they decide nothing here
            if any(v in values for i, v in enumerate(op.operands) if not (linalg and irtools.is_init_operand(op, i))):
                values.update(op.results)
                for region in op.regions:  # a body computes on its op's (per-example) operands
                    for block in region.blocks:
                        values.update(block.arguments)
            for region in [] if linalg else op.regions:  # a loop body that yields per-example values
                for block in region.blocks:
                    ends = list(block.operations)
                    if ends and any(v in values for v in ends[-1].operands):
                        values.update(op.results)
        for op in reversed(ops):  # backward: the initial values such results are computed into
            if any(r in values for r in op.results):
                values.update(v for i, v in enumerate(op.operands) if _is_initial_value(op, i))
        if len(values) == known:
            return values


def _feeding_values(fn: ir.Operation, per_example: set[ir.Value]) -> set[ir.Value]:
    """The shared values of ``fn`` from which per-example ones are computed, directly or through
    other shared values (an index over the examples unsqueezed three times before it is used)."""
    values: set[ir.Value] = set()
    todo = [v for op in irtools.walk(fn) if op != fn and any(r in per_example for r in op.results) for v in op.operands]
    while todo:  # backwards from the per-example results, through what computes each shared operand
        v = todo.pop()
        if v not in per_example and v not in values:
            values.add(v)
            if isinstance(v, ir.OpResult):
                todo.extend(v.owner.operation.operands)
    return values


def _is_initial_value(op: ir.Operation, i: int) -> bool:
    """Whether operand ``i`` of ``op`` is a value its results start from: a linalg ``outs``
    operand, or one of the last operands of an op with a body, one per result (a loop's carried
    inits: ``torch.prim.Loop``, ``scf.for``)."""
    if irtools.is_init_operand(op, i):
        return True
    results = len(op.results)
    return bool(op.regions) and results > 0 and not op.name.startswith("linalg.") and i >= len(op.operands) - results


def apply_edits(program: Program, edits: Sequence[Edit]) -> str:
    """Replay ``edits`` in order on a fresh parse of ``program``; return the verified text.

    Raises `EditError` when an edit does not apply or the result does not verify.
    """
    with Session(program) as s:
        for e in edits:
            s.apply(e)
        s.verify()
        return s.text()


def random_edit(
    program: Program, rng: np.random.Generator, kind: str, *, edits: Sequence[Edit] = (), max_tries: int = 20,
    targets: str = "uniform", keep_examples_apart: bool = False,
) -> Edit:
    """Draw one edit of ``kind`` (one of `EDIT_KINDS`) for the variant
    ``program + edits``, with every random choice resolved and stored in the edit. ``targets``
    (one of `TARGET_WEIGHTINGS`) is how the op or value it deletes or resizes is drawn. With
    ``keep_examples_apart``, no choice reads one example's values into another's place
    (`Session.mixes_examples`; no resize along a per-example value's batch dimension): such a
    variant's outputs would depend on the batch it runs in. How an edit replays does not change.

    The returned edit is checked: appended to ``edits`` it applies and the result verifies.
    Raises `EditError` if no valid edit was found in ``max_tries`` draws and `ConfigError`
    for an unknown kind.
    """
    if kind not in _DRAW:
        raise ConfigError(f"unknown edit kind {kind!r}; valid kinds: {', '.join(EDIT_KINDS + OPT_IN_KINDS)}")
    draw = _DRAW[kind]
    with Session(program) as s:
        for e in edits:
            s.apply(e)
        base = s.text()
    tries = 0
    while tries < max_tries:
        with Session(dataclasses.replace(program, text=base), targets=targets, keep_examples_apart=keep_examples_apart) as s:
            edit = None
            while edit is None and tries < max_tries:  # a draw that finds nothing leaves the session as it was
                edit = draw(s, rng)
                tries += 1
            if edit is None:
                break
            try:
                s.apply(edit)
                s.verify()
            except EditError:
                continue  # the failed edit changed the session: parse afresh
            return edit
    raise EditError(f"no valid {kind} edit found in {max_tries} draws")


# --------------------------------------------------------------------------------------- apply


def _rewire_uses(old: ir.Value, new: ir.Value, home: ir.Block, shapes_for: Callable[[ir.Type], list[tuple[int, ...]]], fill: int) -> None:
    """Point every use of ``old`` at ``new`` reshaped to ``old``'s type; repair ops go right
    before the user's ancestor in ``home`` (the block defining ``old``)."""
    uses = [(u.owner.operation, u.operand_number) for u in old.uses]
    for user, n in uses:
        anchor = irtools.ancestor_in(user, home)
        if anchor is None:
            raise EditError("a use lies outside the defining block")
        user.operands[n] = irtools.convert(new, shapes_for(old.type), old.type, fill, ir.InsertionPoint(anchor))


def _home_block(v: ir.Value) -> ir.Block:
    return v.owner.operation.block if isinstance(v, ir.OpResult) else ir.BlockArgument(v).owner


def _dst_shapes(t: ir.Type) -> list[tuple[int, ...]]:
    info = irtools.tensor_info(t)
    return [info.shape] if info else []


def _apply_delete(s: Session, e: Delete) -> None:
    index = s.index()
    op = irtools.lookup(e.uid, index)
    if irtools.is_terminator(op) or not op.results:
        raise EditError(f"op {e.uid} ({op.name}) cannot be deleted")
    if len(e.sources) != len(op.results):
        raise EditError(f"delete {e.uid} stores {len(e.sources)} replacements for {len(op.results)} results")
    for res, src in zip(op.results, e.sources):
        if not list(res.uses):
            continue
        if not src.value:
            raise EditError(f"result of {e.uid} is used but the delete stores no replacement")
        v = irtools.resolve(src.value, s.fn, index)
        if not irtools.dominates(v, op):
            raise EditError(f"{src.value} does not dominate {e.uid}")
        _rewire_uses(res, v, op.block, _dst_shapes, src.fill)
    op.erase()


def _apply_copy(s: Session, e: Copy) -> None:
    index = s.index()
    src = irtools.lookup(e.uid, index)
    pos = irtools.lookup(e.before, index)
    if e.new_uid in index:
        raise EditError(f"UID {e.new_uid} of the copy is already taken")
    if irtools.is_terminator(src) or pos.block != src.block:
        raise EditError(f"op {e.uid} cannot be copied before {e.before}")
    if len(e.operands) != len(src.operands):
        raise EditError(f"copy of {e.uid} stores {len(e.operands)} operand choices for {len(src.operands)} operands")
    clone = src.clone(ip=ir.InsertionPoint(pos)).operation
    irtools.set_uid(clone, e.new_uid)
    for inner in irtools.walk(clone):
        if (u := irtools.uid_of(inner)):
            irtools.set_uid(inner, f"{e.new_uid}/{u}")
    recomputed: dict[ir.Value, ir.Value] = {}
    for i, choice in enumerate(e.operands):
        if choice.value:
            v = irtools.resolve(choice.value, s.fn, index)
            if not irtools.dominates(v, clone):
                raise EditError(f"{choice.value} does not dominate the copy of {e.uid}")
            clone.operands[i] = irtools.repair_to(v, clone.operands[i].type, choice.fill, ir.InsertionPoint(clone))
        elif irtools.is_static_parameter(clone.operands[i]):
            clone.operands[i] = irtools.recompute_before(clone.operands[i], clone, e.new_uid, recomputed)
        if not irtools.dominates(clone.operands[i], clone):
            raise EditError(f"operand {i} of the copy of {e.uid} does not dominate its new position")
    if e.rewire_user:
        user = irtools.lookup(e.rewire_user, index)
        if user.block != clone.block or not clone.is_before_in_block(user):
            raise EditError(f"op {e.rewire_user} does not follow the copy of {e.uid}")
        if e.rewire_operand >= len(user.operands) or not clone.results:
            raise EditError(f"op {e.rewire_user} has no operand {e.rewire_operand}")
        dst = user.operands[e.rewire_operand].type
        user.operands[e.rewire_operand] = irtools.repair_to(clone.results[0], dst, e.rewire_fill, ir.InsertionPoint(user))


def _apply_resize(s: Session, e: Resize) -> None:
    index = s.index()
    v = irtools.resolve(e.value, s.fn, index)
    info = irtools.tensor_info(v.type)
    if info is None or not 0 <= e.dim < len(info.shape) or not 1 <= e.size < info.shape[e.dim]:
        raise EditError(f"{e.value} of type {v.type} cannot be resized to {e.size} along dim {e.dim}")
    if e.keep and not e.propagate:
        raise EditError("kept indices need a type-changing resize (propagate)")
    if e.propagate:
        s.last_narrowing = narrow.narrow(v, e.dim, e.size, e.fill, e.keep)
        return
    small = tuple(e.size if d == e.dim else n for d, n in enumerate(info.shape))
    _rewire_uses(v, v, _home_block(v), lambda t: [small, info.shape], e.fill)


def _apply_operand_replace(s: Session, e: OperandReplace) -> None:
    index = s.index()
    user = irtools.lookup(e.user, index)
    if e.operand >= len(user.operands):
        raise EditError(f"op {e.user} has no operand {e.operand}")
    v = irtools.resolve(e.source.value, s.fn, index)
    if not irtools.dominates(v, user):
        raise EditError(f"{e.source.value} does not dominate {e.user}")
    dst = user.operands[e.operand].type
    user.operands[e.operand] = irtools.repair_to(v, dst, e.source.fill, ir.InsertionPoint(user))


def block_bounds(s: Session, e: DeleteBlock) -> tuple[ir.Operation, ir.Value]:
    """The op ``e`` bypasses and the value its uses then read, in the session's program as it is
    now. Raises `EditError` when either is gone or the pair no longer makes a block."""
    index = s.index()
    end = irtools.lookup(e.end, index)
    if len(end.results) != 1 or irtools.is_terminator(end):
        raise EditError(f"op {e.end} ({end.name}) cannot end a deleted block")
    entry = irtools.resolve(e.entry, s.fn, index)
    out = end.results[0]
    if entry.type != out.type:
        raise EditError(f"{e.entry} ({entry.type}) does not have the type of {e.end}'s result ({out.type})")
    if not irtools.dominates(entry, end) or entry == out:
        raise EditError(f"{e.entry} does not come before {e.end}")
    return end, entry


def _apply_delete_block(s: Session, e: DeleteBlock) -> None:
    end, entry = block_bounds(s, e)
    out = end.results[0]
    for use in list(out.uses):
        use.owner.operation.operands[use.operand_number] = entry
    for op in dead_chain(end, entry):  # users before the values they read
        op.erase()


def dead_chain(end: ir.Operation, entry: ir.Value) -> list[ir.Operation]:
    """``end`` and the tagged ops of its block that only it (transitively) uses, stopping at
    ``entry`` and what computes it: the ops a bypass of ``end`` leaves dead, latest first.
    ``end``'s result must have no uses."""
    block = end.block
    keep: set[str] = set()  # ops that compute the entry value stay
    if isinstance(entry, ir.OpResult) and entry.owner.operation.block == block:
        stack = [entry.owner.operation]
        while stack:
            op = stack.pop()
            uid = irtools.uid_of(op)
            if uid in keep:
                continue
            keep.add(uid)
            stack.extend(o.owner.operation for o in op.operands
                         if isinstance(o, ir.OpResult) and o.owner.operation.block == block)
    dead: dict[str, ir.Operation] = {irtools.uid_of(end): end}
    changed = True
    while changed:
        changed = False
        for op in list(dead.values()):
            for operand in op.operands:
                if not isinstance(operand, ir.OpResult):
                    continue
                producer = operand.owner.operation
                uid = irtools.uid_of(producer)
                if not uid or uid in dead or uid in keep or producer.block != block or irtools.is_terminator(producer):
                    continue
                users = [irtools.ancestor_in(u.owner.operation, block) for r in producer.results for u in r.uses]
                if all(user is not None and irtools.uid_of(user) in dead for user in users):
                    dead[uid] = producer
                    changed = True
    ordered = [op.operation for op in block.operations if irtools.uid_of(op.operation) in dead]
    return ordered[::-1]


_APPLY: dict[type[Any], Callable[[Session, Any], None]] = {
    Delete: _apply_delete,
    DeleteBlock: _apply_delete_block,
    Copy: _apply_copy,
    Resize: _apply_resize,
    OperandReplace: _apply_operand_replace,
}


# ---------------------------------------------------------------------------------------- draw


def _targets(s: Session) -> list[ir.Operation]:
    """Ops an edit may delete or copy: tagged, not terminators, with only tensor/scalar results."""
    return [
        op for op in irtools.walk(s.fn)
        if irtools.uid_of(op) and op.results and not irtools.is_terminator(op)
        and all(irtools.is_mutable_type(r.type) for r in op.results)
    ]


def _pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    return items[int(rng.integers(len(items)))]


def _sources_for(
    s: Session, op: ir.Operation, dst: ir.Value, exclude: ir.Value | None = None, *, no_args: bool = False
) -> list[str]:
    """Names of values that may replace a use of ``dst`` at ``op`` (without the entry
    function's arguments when ``no_args``: they cannot be linalg destinations; without those that
    would mix examples when the session keeps them apart)."""
    names = []
    t = dst.type
    for v in irtools.dominating_values(op, s.fn):
        if no_args and irtools.is_function_argument(v, s.fn):
            continue
        if (exclude is None or v != exclude) and irtools.compatible(v.type, t):
            if s.keep_examples_apart and s.mixes_examples(v, dst):
                continue
            name = irtools.value_name(v, s.fn)
            if name:
                names.append(name)
    return names


def _fill(rng: np.random.Generator) -> int:
    return int(rng.integers(2))


def _draw_delete(s: Session, rng: np.random.Generator) -> Edit | None:
    targets = _targets(s)
    if not targets:
        return None
    op = s.pick(rng, targets, irtools.op_cost)
    sources = []
    for res in op.results:
        if not list(res.uses):
            sources.append(Source(""))
            continue
        as_init = any(irtools.is_init_operand(u.owner.operation, u.operand_number) for u in res.uses)
        names = _sources_for(s, op, res, no_args=as_init)
        if not names:
            return None
        sources.append(Source(_pick(rng, names), _fill(rng)))
    return Delete(uid=irtools.uid_of(op), sources=tuple(sources))


def _draw_copy(s: Session, rng: np.random.Generator) -> Edit | None:
    targets = _targets(s)
    if not targets:
        return None
    op = _pick(rng, targets)
    block_ops = [o.operation for o in op.block.operations if irtools.uid_of(o.operation)]
    pos = _pick(rng, block_ops)
    uid = irtools.uid_of(op)
    choices = []
    index = s.index()
    reads_examples = False  # whether the copy computes on per-example values
    for operand in op.operands:
        if irtools.dominates(operand, pos) or irtools.is_static_parameter(operand):
            choices.append(Source(""))  # a static parameter is recomputed, never replaced
            reads_examples = reads_examples or s.per_example(operand)
            continue
        if not irtools.is_mutable_type(operand.type):
            return None  # such as a list of tensors: no repair can stand in for it
        names = _sources_for(s, pos, operand, no_args=irtools.is_init_operand(op, len(choices)))
        if not names:
            return None
        choices.append(Source(_pick(rng, names), _fill(rng)))
        reads_examples = reads_examples or s.per_example(irtools.resolve(choices[-1].value, s.fn, index))
    result = op.results[0]
    after = block_ops[block_ops.index(pos):]
    uses = [(irtools.uid_of(u), i) for u in after for i, o in enumerate(u.operands)
            if irtools.is_mutable_type(o.type) and irtools.compatible(result.type, o.type)
            and not (s.keep_examples_apart and s.mixes_examples(result, o, reads_examples=reads_examples))]
    if not uses:
        return None
    user, operand = _pick(rng, uses)
    return Copy(uid=uid, before=irtools.uid_of(pos), new_uid=f"{uid}.c{int(rng.integers(16**6)):06x}",
                operands=tuple(choices), rewire_user=user, rewire_operand=operand, rewire_fill=_fill(rng))


def _draw_resize(s: Session, rng: np.random.Generator, *, type_changing: bool = True) -> Edit | None:
    """A resize of a used value along one dim: half the time a type-changing (narrowing) one
    when the value's users can carry it and ``type_changing``, else crop and fill in place."""
    values = list(s.fn.regions[0].blocks[0].arguments) + [r for op in _targets(s) for r in op.results]
    values = [v for v in values if list(v.uses) and _resizable_dims(s, v)]
    if not values:
        return None
    v = s.pick(rng, values, s.value_cost)
    info = irtools.tensor_info(v.type)
    assert info is not None
    dim = _pick(rng, _resizable_dims(s, v))
    extent = info.shape[dim]
    if type_changing and narrow.can_carry(v) and rng.random() < 0.5:
        # type-changing: mostly mild cuts (keep at least half), sometimes any size
        low = (extent + 1) // 2 if rng.random() < 0.75 else 1  # below extent, since extent >= 2
        size = int(rng.integers(low, extent))
        return Resize(value=irtools.value_name(v, s.fn), dim=dim, size=size, fill=_fill(rng), propagate=True)
    return Resize(value=irtools.value_name(v, s.fn), dim=dim, size=int(rng.integers(1, extent)), fill=_fill(rng))


def _resizable_dims(s: Session, v: ir.Value) -> list[int]:
    """The dims of tensor ``v`` a resize may shrink: extent 2 or more, and, when the session keeps
    examples apart, not the batch dim of a per-example value nor one of a shared value spread
    along the batch (`Session.spread_batch_dims`): cropping either blanks some examples."""
    info = irtools.tensor_info(v.type)
    if info is None:
        return []
    batch: frozenset[int] = frozenset()
    if s.keep_examples_apart:
        batch = s.batch_dims(v) if s.per_example(v) else s.spread_batch_dims(v)
    return [d for d, n in enumerate(info.shape) if n >= 2 and d not in batch]


WEIGHT_OPS = ("torch.vtensor.literal", "torch_c.from_builtin_tensor")
"""The ops that give a torch program its weights: inline literals, and the conversions of loaded
globals, as iree-turbine stores a module's parameters (a ResNet's every convolution weight)."""
CONSTANT_OPS = (*WEIGHT_OPS, "arith.constant", "util.global.load")
"""The ops that give any program its constant data (weights, tables)."""


def _draw_resize_importance(s: Session, rng: np.random.Generator) -> Edit | None:
    """A type-changing resize of a weight constant along dim 0 (a conv's output channels, a
    linear layer's output rows) that keeps the entries with the largest L2 norm. Only weights
    whose every consumer can carry the kept indices are drawn (`narrow.carries_kept`): a
    transformer's attention projections, read by a view into heads, are not."""
    weights = [op.results[0] for op in _targets(s) if op.name in WEIGHT_OPS
               and (i := irtools.tensor_info(op.results[0].type)) and len(i.shape) >= 2
               and narrow.carries_kept(op.results[0], 0)]
    if not weights:
        return None
    v = s.pick(rng, weights, s.value_cost)
    data = s.constant(v.owner.operation)
    if data is None:
        return None
    extent = data.shape[0]
    low = (extent + 1) // 2 if rng.random() < 0.75 else 1
    size = int(rng.integers(low, extent))
    return Resize(value=irtools.value_name(v, s.fn), dim=0, size=size, fill=0, propagate=True,
                  keep=largest_norm_rows(data, size))


def largest_norm_rows(weight: np.ndarray, size: int) -> tuple[int, ...]:
    """Ascending indices of the ``size`` slices along dim 0 of ``weight`` with the largest L2
    norm (ties: the lower index)."""
    norms = np.linalg.norm(weight.reshape(weight.shape[0], -1).astype(np.float64), axis=1)
    order = np.lexsort((np.arange(len(norms)), -norms))
    return tuple(sorted(int(i) for i in order[:size]))


def _draw_operand_replace(s: Session, rng: np.random.Generator) -> Edit | None:
    users = [op for op in irtools.walk(s.fn) if irtools.uid_of(op)
             and any(irtools.is_mutable_type(o.type) for o in op.operands)]
    if not users:
        return None
    user = _pick(rng, users)
    slots = [i for i, o in enumerate(user.operands) if irtools.is_mutable_type(o.type)]
    i = _pick(rng, slots)
    names = _sources_for(s, user, user.operands[i], exclude=user.operands[i],
                         no_args=irtools.is_init_operand(user, i))
    if not names:
        return None
    return OperandReplace(user=irtools.uid_of(user), operand=i, source=Source(_pick(rng, names), _fill(rng)))


def _draw_delete_block(s: Session, rng: np.random.Generator) -> Edit | None:
    """A random op with one used tensor result, bypassed to an earlier value of exactly its type
    from its own backward slice (at most `_BLOCK_REACH` ops back); the ops that leaves dead go.
    In a torch-level program with joins (residual adds), `BRANCH_SHARE` of the draws remove a
    whole branch instead (`branch_bypass`); other programs draw exactly as before."""
    ends = [op for op in _targets(s) if len(op.results) == 1 and list(op.results[0].uses)
            and irtools.tensor_info(op.results[0].type) is not None]
    if not ends:
        return None
    joins = [op for op in ends if is_join(op)]
    if joins and rng.random() < BRANCH_SHARE:
        edit = branch_bypass(s, s.pick(rng, joins, lambda op: s.value_cost(op.results[0])))
        if edit is not None:
            return edit
    end = s.pick(rng, ends, lambda op: s.value_cost(op.results[0]))
    out = end.results[0]
    entries: list[ir.Value] = []
    seen: set[str] = set()
    frontier = [end]
    while frontier and len(seen) < _BLOCK_REACH:
        op = frontier.pop(0)
        for operand in op.operands:
            if operand.type == out.type and operand not in entries:
                entries.append(operand)
            if isinstance(operand, ir.OpResult) and operand.owner.operation.block == end.block:
                producer = operand.owner.operation
                uid = irtools.uid_of(producer)
                if uid and uid not in seen:
                    seen.add(uid)
                    frontier.append(producer)
    for i in rng.permutation(len(entries)):
        edit = bypass(s, end, entries[int(i)])
        if edit is not None:
            return edit
    return None


def bypass(s: Session, end: ir.Operation, entry: ir.Value) -> DeleteBlock | None:
    """The `DeleteBlock` that rewires ``end``'s uses to ``entry`` and removes what dies, or None
    when ``entry`` has no name or nothing would be removed. Leaves the session unchanged."""
    name = irtools.value_name(entry, s.fn)
    out = end.results[0]
    if not name or entry.type != out.type:
        return None
    uses = [(u.owner.operation, u.operand_number) for u in out.uses]
    for user, n in uses:
        user.operands[n] = entry
    dead = dead_chain(end, entry)
    for user, n in uses:
        user.operands[n] = out
    if not dead:
        return None
    return DeleteBlock(end=irtools.uid_of(end), entry=name, erased=tuple(irtools.uid_of(op) for op in dead))


def _same_type_operands(op: ir.Operation) -> list[ir.Value]:
    """The distinct operands of ``op`` that have its (single) result's type."""
    out: list[ir.Value] = []
    for operand in op.operands:
        if operand.type == op.results[0].type and operand not in out:
            out.append(operand)
    return out


def is_join(op: ir.Operation) -> bool:
    """True for a torch-level op with one result that merges two or more distinct values of that
    result's type (a residual add). Linalg ops are left out: their init operand has the result's
    type too, so every element-wise op would count."""
    return op.name.startswith("torch.") and len(op.results) == 1 and len(_same_type_operands(op)) >= 2


def branch_bypass(s: Session, join: ir.Operation) -> DeleteBlock | None:
    """``join`` (an op merging two or more values of its result's type, as a residual add)
    bypassed to the operand whose bypass leaves the most ops dead: for ``x + branch(x)``, the
    whole branch and the add go and uses read ``x``. None when no bypass removes anything."""
    edits = [e for e in (bypass(s, join, v) for v in _same_type_operands(join)) if e is not None]
    return max(edits, key=lambda e: len(e.erased), default=None)


def branch_sweep(program: Program, depth: int) -> list[tuple[DeleteBlock, ...]]:
    """Edit lists that remove the last 1, 2, ..., ``depth`` branches of ``program``, counted from
    its output back (each removal a `branch_bypass` of a join, applied on top of the ones after
    it); empty for a program without joins. A trained residual network's last blocks are usually
    the cheapest to drop: on ResNet-50 at 32x32, removing layer4's three cost 0.06 test points and
    ran 1.46x faster, and a search rarely stacks removals on its own (the default crossover of
    two single removals gives two single removals back)."""
    sweep: list[tuple[DeleteBlock, ...]] = []
    removed: list[DeleteBlock] = []
    with Session(program) as s:
        joins = [(irtools.uid_of(op), op) for op in _targets(s)
                 if len(op.results) == 1 and list(op.results[0].uses) and is_join(op)]
        erased: set[str] = set()
        for uid, op in reversed(joins):
            if len(sweep) >= depth:
                break
            if uid in erased:  # an earlier removal took it (its handle must not be touched)
                continue
            edit = branch_bypass(s, op)
            if edit is None:
                continue
            s.apply(edit)
            erased.update(edit.erased)
            removed.append(edit)
            sweep.append(tuple(removed))
        s.verify()
    return sweep


_BLOCK_REACH = 64
"""How many ops back a drawn block may start."""

BRANCH_SHARE = 0.5
"""The share of block deletions drawn as whole-branch removals in programs with joins. ResNet-50's
16 residual adds are 16 of the 1,414 ops a block can end at, so a uniform draw of ends removes a
branch about once in 200 block deletions."""


_DRAW: dict[str, Callable[[Session, np.random.Generator], Edit | None]] = {  # a draw reads the session, never changes it
    "delete": _draw_delete,
    "delete_block": _draw_delete_block,
    "copy": _draw_copy,
    "resize": _draw_resize,
    "resize_importance": _draw_resize_importance,
    "resize_fill": functools.partial(_draw_resize, type_changing=False),
    "operand_replace": _draw_operand_replace,
}
