"""Explanations of GEVO-ML variants: one sentence per edit and a unified diff of the program."""

from __future__ import annotations

import collections
import difflib
import re
from collections.abc import Sequence

from evoforge.mlir import irtools
from evoforge.mlir.edits import Copy, Delete, DeleteBlock, Edit, EditError, OperandReplace, Resize
from evoforge.mlir.mutate import Session, apply_edits, block_bounds, bypass
from evoforge.mlir.narrow import NarrowReport
from evoforge.mlir.program import Program

_RESOURCES = re.compile(r"\n\{-#.*?#-\}\n?", re.DOTALL)


def describe_edits(program: Program, edits: Sequence[Edit]) -> list[str]:
    """One sentence per edit, naming op kinds, UIDs and value types as they are when the edit
    is replayed. An edit that does not apply is described and marked "(does not apply: ...)";
    the edits after it are described against the program without it."""
    lines = []
    with Session(program) as s:
        for e in edits:
            text = _describe(s, e)
            s.last_narrowing = None
            try:
                s.apply(e)
            except EditError as exc:
                text += f" (does not apply: {exc})"
            if s.last_narrowing is not None:
                text += _narrowing(s.last_narrowing)
            lines.append(text)
    return lines


def program_diff(program: Program, edits: Sequence[Edit], *, context: int = 2) -> str:
    """Unified diff of the edited program against the original (weight blobs left out).
    Raises `EditError` if the edits do not apply."""
    old = _RESOURCES.sub("\n", program.text).splitlines(keepends=True)
    new = _RESOURCES.sub("\n", apply_edits(program, edits)).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, "original.mlir", "variant.mlir", n=context))


def _narrowing(report: NarrowReport) -> str:
    counts = collections.Counter(name.split(".", 2)[-1] for name in report.absorbed)
    ops = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in sorted(counts.items()))
    return f": {len(report.absorbed)} ops compute on the smaller shape ({ops or 'none'}), {report.padded_back} uses read it padded back"


def _op(s: Session, uid: str) -> str:
    op = s.index().get(uid)
    return f"{op.name} {uid}" if op is not None else f"op {uid} (missing)"


def _value(s: Session, name: str, dst: object = None, fill: int = 0) -> str:
    """Name, defining op and type of a value, plus the shape repair needed to make it ``dst``."""
    try:
        v = irtools.resolve(name, s.fn, s.index())
    except EditError:
        return f"{name} (missing)"
    where = f"function argument {name[3:]}" if name.startswith("arg") else f"{name} of {_op(s, re.split('[#^]', name)[0])}"
    text = f"{where} : {v.type}"
    if dst is not None and v.type != dst:
        text += f" (reshaped to {dst}, padding with {fill})"
    return text


def _operand_type(s: Session, uid: str, i: int) -> object:
    op = s.index().get(uid)
    return op.operands[i].type if op is not None and i < len(op.operands) else None


def _describe(s: Session, e: Edit) -> str:
    if isinstance(e, Delete):
        op = s.index().get(e.uid)
        types = [r.type for r in op.results] if op is not None else [None] * len(e.sources)
        used = [f"result {i} -> {_value(s, src.value, t, src.fill)}"
                for i, (src, t) in enumerate(zip(e.sources, types)) if src.value]
        return f"delete {_op(s, e.uid)}" + (f"; its uses now read {', '.join(used)}" if used else " (its results were unused)")
    if isinstance(e, Copy):
        ops = [f"operand {i} := {_value(s, c.value, _operand_type(s, e.uid, i), c.fill)}"
               for i, c in enumerate(e.operands) if c.value]
        text = f"copy {_op(s, e.uid)} as {e.new_uid} before {_op(s, e.before)}"
        if ops:
            text += f" with {', '.join(ops)}"
        if e.rewire_user:
            text += f"; operand {e.rewire_operand} of {_op(s, e.rewire_user)} now reads the copy"
        return text
    if isinstance(e, Resize):
        if e.keep:
            shown = ", ".join(map(str, e.keep[:12])) + (", ..." if len(e.keep) > 12 else "")
            return (f"resize {_value(s, e.value)} to the {e.size} entries along dim {e.dim} with the largest L2 norm "
                    f"({shown}) and carry them through the ops that can compute on them (each gathers the same indices)")
        if e.propagate:
            return (f"resize {_value(s, e.value)} to its centered {e.size} entries along dim {e.dim} and carry "
                    f"the smaller shape through the ops that can compute on it (the other uses read it padded with {e.fill})")
        return (f"resize {_value(s, e.value)}: keep the centered {e.size} entries along dim {e.dim} "
                f"and set the rest to {e.fill}")
    if isinstance(e, DeleteBlock):
        index = s.index()
        try:  # what dies here, after the edits before it, which may differ from where it was drawn
            here = bypass(s, *block_bounds(s, e))
        except EditError:
            here = None
        erased = here.erased if here is not None else e.erased
        kinds = collections.Counter(index[u].name for u in erased if u in index)
        listed = ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in sorted(kinds.items()))
        return (f"delete the block of {len(erased)} ops ending at {_op(s, e.end)} ({listed}); "
                f"its uses now read {_value(s, e.entry)}")
    if isinstance(e, OperandReplace):
        dst = _operand_type(s, e.user, e.operand)
        return f"replace operand {e.operand} of {_op(s, e.user)} with {_value(s, e.source.value, dst, e.source.fill)}"
    raise TypeError(f"not an edit: {e!r}")
