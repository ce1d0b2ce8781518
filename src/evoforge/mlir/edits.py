"""GEVO-ML edits as pure data, and the edit-list genome.

Every random choice an operator makes is resolved and stored in the edit, so replaying an
edit list on a fresh parse of the pristine program always gives the same text.

Values are named by strings (`ValueRef` grammar):

- ``"arg<i>"``: argument ``i`` of the entry function;
- ``"<uid>#<i>"``: result ``i`` of the op tagged ``uid``;
- ``"<uid>^<i>"``: argument ``i`` of the entry block of the first region of op ``uid``.

A `Source` is a value plus the pad fill (0 or 1) used when shape repair has to grow it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from evoforge.errors import ConfigError, EvoforgeError
from evoforge.genome import Genome, canonical_json, register_genome

if TYPE_CHECKING:
    import numpy as np

EditKind = Literal["delete", "copy", "resize", "resize_importance", "operand_replace", "delete_block", "resize_fill"]
EDIT_KINDS: tuple[EditKind, ...] = ("delete", "copy", "resize", "resize_importance", "operand_replace", "delete_block")
"""Mutation operators, the default set. ``resize_importance`` draws a `Resize` too: a type-changing
one of a weight that keeps its largest-norm rows or channels rather than the centered ones."""
OPT_IN_KINDS: tuple[EditKind, ...] = ("resize_fill",)
"""Operators only used when asked for: ``resize_fill`` is the type-keeping half of ``resize``
(crop and fill, never narrowing), for ablations that leave type-changing resizes out."""
TORCH_ONLY_KINDS = ("resize_importance",)
"""Operators that need a torch-level program (a linalg program's run leaves them out)."""
TARGET_WEIGHTINGS = ("uniform", "cost")
"""How a delete, block deletion or resize draws its target: ``uniform`` over the candidates (the
paper's operators), or ``cost``, which favours the ops and values that hold the program's work
(`evoforge.mlir.irtools.op_cost`): most of a convolutional network's time sits in a few dozen
convolutions among hundreds of cheap element-wise ops."""


CROSSOVER_CUTS = ("halves", "anywhere")
"""Where `crossover` cuts the shuffled list of the edits its parents do not share: ``halves``, in
the middle (GEVO's code since 2021 cuts strictly inside the list, so each child gets at least one),
or ``anywhere``, at a uniform point from none to all of them (GEVO's 2020 code cut its parents'
shuffled edits anywhere): one child may then hold every differing edit, so two single-edit parents
can give a child with both edits, which ``halves`` never does."""


def check_crossover_cut(name: str) -> str:
    """``name`` if it is one of `CROSSOVER_CUTS`, else a ConfigError that lists them."""
    if name not in CROSSOVER_CUTS:
        raise ConfigError(f"unknown crossover {name!r}; valid: {', '.join(CROSSOVER_CUTS)}")
    return name


def check_target_weighting(name: str) -> str:
    """``name`` if it is one of `TARGET_WEIGHTINGS`, else a ConfigError that lists them."""
    if name not in TARGET_WEIGHTINGS:
        raise ConfigError(f"unknown edit_targets {name!r}; valid: {', '.join(TARGET_WEIGHTINGS)}")
    return name


def check_edit_kinds(kinds: Sequence[str]) -> list[str]:
    """``kinds`` without repeats, in order; `ConfigError` naming the valid kinds if one is unknown or none is given."""
    bad = [k for k in kinds if k not in EDIT_KINDS + OPT_IN_KINDS]
    if bad or not kinds:
        raise ConfigError(f"unknown edit kinds {bad}; choose one or more of: {', '.join(EDIT_KINDS + OPT_IN_KINDS)}")
    return list(dict.fromkeys(kinds))


class EditError(EvoforgeError, ValueError):
    """An edit does not apply to the program it is replayed on (a referenced op or value is
    gone, types no longer match, or the result does not verify). The variant is invalid."""


@dataclasses.dataclass(frozen=True, order=True)
class Source:
    """A replacement value and the constant (0 or 1) centered padding uses if it must grow."""

    value: str
    fill: int = 0

    def __post_init__(self) -> None:
        if self.fill not in (0, 1):
            raise ConfigError(f"Source.fill must be 0 or 1, but got {self.fill!r}")


@dataclasses.dataclass(frozen=True)
class Delete:
    """Erase op ``uid``; result ``i`` is replaced in all its uses by ``sources[i]``
    (reshaped to the result's type). An empty ``sources[i].value`` means the result had no uses."""

    KIND: ClassVar[str] = "delete"
    uid: str
    sources: tuple[Source, ...]


@dataclasses.dataclass(frozen=True)
class Copy:
    """Clone op ``uid`` (with its regions) right before op ``before`` (same block) and tag it
    ``new_uid``. ``operands[i]`` replaces operand ``i`` of the clone (empty value: keep it; a
    static parameter defined after ``before``, such as a stride list, is recomputed there). If
    ``rewire_user`` is set, operand ``rewire_operand`` of that later op is rewired to the
    clone's first result, reshaped with ``rewire_fill``."""

    KIND: ClassVar[str] = "copy"
    uid: str
    before: str
    new_uid: str
    operands: tuple[Source, ...]
    rewire_user: str = ""
    rewire_operand: int = 0
    rewire_fill: int = 0


@dataclasses.dataclass(frozen=True)
class Resize:
    """Shrink ``value`` along ``dim`` to its centered ``size`` entries (or the entries ``keep``).

    Type-preserving (``propagate`` false): the slice is padded back to the original extent
    with the constant ``fill`` and every use reads that. Type-changing (``propagate`` true,
    torch-level programs): the smaller type is carried through the consumers that can compute
    on it (`evoforge.mlir.narrow`), which then do less work; the other uses read it padded back.
    """

    KIND: ClassVar[str] = "resize"
    value: str
    dim: int
    size: int
    fill: int = 0
    propagate: bool = dataclasses.field(default=False, metadata={"omit_default": True})
    keep: tuple[int, ...] = dataclasses.field(default=(), metadata={"omit_default": True})
    """Type-changing only: the indices kept along ``dim`` (ascending, ``size`` of them) instead of
    the centered ones; every consumer that carries the smaller type gathers the same indices."""


@dataclasses.dataclass(frozen=True)
class OperandReplace:
    """Operand ``operand`` of op ``user`` becomes ``source`` (reshaped to the operand's type)."""

    KIND: ClassVar[str] = "operand_replace"
    user: str
    operand: int
    source: Source


@dataclasses.dataclass(frozen=True)
class DeleteBlock:
    """Remove a chain of ops whose input and output types match (a block, a residual branch with
    its add): every use of op ``end``'s result now reads ``entry``, a value of exactly that type
    computed before the chain, and the ops that leaves dead are removed. ``erased`` (UIDs) records
    what died where the edit was drawn; replayed after other edits, the bypass removes what dies
    there (a gradient chain that another parameter's update still reads stays), so an edit drawn
    on top of an earlier removal also applies without it."""

    KIND: ClassVar[str] = "delete_block"
    end: str
    entry: str
    erased: tuple[str, ...]


Edit = Delete | Copy | Resize | OperandReplace | DeleteBlock
_EDIT_CLASSES: dict[str, type[Any]] = {c.KIND: c for c in (Delete, Copy, Resize, OperandReplace, DeleteBlock)}


def edit_to_data(edit: Edit) -> dict[str, Any]:
    """JSON-ready dict of one edit, tagged with its kind."""
    data: dict[str, Any] = {"kind": edit.KIND}
    for f in dataclasses.fields(edit):
        value = getattr(edit, f.name)
        if f.metadata.get("omit_default") and value == f.default:
            continue  # fields added later stay out of older edits' keys and hashes
        if isinstance(value, Source):
            value = [value.value, value.fill]
        elif isinstance(value, tuple):
            value = [[s.value, s.fill] if isinstance(s, Source) else s for s in value]
        data[f.name] = value
    return data


def edit_from_data(data: dict[str, Any]) -> Edit:
    """Inverse of `edit_to_data`; raises `ConfigError` on unknown kinds or fields."""
    kind = data.get("kind")
    cls = _EDIT_CLASSES.get(str(kind))
    if cls is None:
        raise ConfigError(f"unknown edit kind {kind!r}; valid kinds: {', '.join(sorted(_EDIT_CLASSES))}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields) - {"kind"}
    if unknown:
        raise ConfigError(f"{kind} edit has unknown fields {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name == "kind":
            continue
        if name == "source":
            value = Source(str(value[0]), int(value[1]))
        elif name in ("sources", "operands"):
            value = tuple(Source(str(v), int(f)) for v, f in value)
        elif name == "erased":
            value = tuple(str(v) for v in value)
        elif name == "keep":
            value = tuple(int(v) for v in value)
        kwargs[name] = value
    try:
        return cls(**kwargs)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ConfigError(f"{kind} edit is missing fields: {exc}") from None


def edit_key(edit: Edit) -> str:
    """Canonical JSON of one edit: the sort key for order-insensitive identity."""
    return canonical_json(edit_to_data(edit))


def crossover(
    a: Sequence[Edit], b: Sequence[Edit], rng: np.random.Generator, cut: str = "halves"
) -> tuple[tuple[Edit, ...], tuple[Edit, ...]]:
    """GEVO crossover of two edit lists: edits common to both parents go to both children; the
    others are shuffled and split between the children where ``cut`` (one of `CROSSOVER_CUTS`)
    says. Each child keeps the parents' relative order (``a``'s edits first, then ``b``'s), so
    copies precede edits that refer to their clones."""
    check_crossover_cut(cut)
    edits = [*a, *b]
    keys = [edit_key(e) for e in edits]
    common = set(keys[: len(a)]) & set(keys[len(a):])
    shared: list[tuple[int, Edit]] = []  # each distinct edit once, at its first position in a + b
    rest: list[tuple[int, Edit]] = []
    seen: set[str] = set()
    for i, (k, e) in enumerate(zip(keys, edits)):
        if k not in seen:
            seen.add(k)
            (shared if k in common else rest).append((i, e))
    perm = rng.permutation(len(rest))
    if cut == "halves":
        first = len(rest) // 2 + (int(rng.integers(2)) if len(rest) % 2 else 0)
    else:
        first = int(rng.integers(len(rest) + 1))
    pick1 = {int(j) for j in perm[:first]}
    child1 = [ie for j, ie in enumerate(rest) if j in pick1]
    child2 = [ie for j, ie in enumerate(rest) if j not in pick1]
    return (
        tuple(e for _, e in sorted(shared + child1, key=lambda t: t[0])),
        tuple(e for _, e in sorted(shared + child2, key=lambda t: t[0])),
    )


@register_genome
@dataclasses.dataclass(frozen=True)
class EditListGenome(Genome):
    """An ordered list of edits replayed on the pristine program.

    Replay uses the stored order; identity does not: `content_hash` hashes the sorted edits,
    so two genomes holding the same edits in another order share a hash (GEVO's fitness-cache key).
    """

    TYPE: ClassVar[str] = "mlir-edits"
    VERSION: ClassVar[int] = 1

    edits: tuple[Edit, ...] = ()

    def to_data(self) -> dict[str, Any]:
        return {"edits": [edit_to_data(e) for e in self.edits]}

    @classmethod
    def from_data(cls, data: dict[str, Any], version: int) -> EditListGenome:
        if version != cls.VERSION:
            raise ConfigError(f"{cls.TYPE} genome version {version} is not supported (this evoforge reads {cls.VERSION})")
        unknown = set(data) - {"edits"}
        if unknown:
            raise ConfigError(f"{cls.TYPE} genome has unknown fields {sorted(unknown)}")
        return cls(edits=tuple(edit_from_data(e) for e in data.get("edits", [])))

    @property
    def content_hash(self) -> str:
        """16 hex digits of sha256 over the sorted canonical edits (order-insensitive)."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            keys = sorted(edit_key(e) for e in self.edits)
            cached = hashlib.sha256(canonical_json([self.TYPE, keys]).encode()).hexdigest()[:16]
            object.__setattr__(self, "_hash", cached)
        return cached

    def with_edit(self, edit: Edit) -> EditListGenome:
        """A new genome with ``edit`` appended."""
        return EditListGenome(edits=self.edits + (edit,))
