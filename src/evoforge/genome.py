"""Genomes are frozen, JSON-serializable data; code that applies them lives elsewhere.

A genome class subclasses `Genome`, declares ``TYPE`` (a unique tag) and ``VERSION``, and is
registered with `register_genome`. Its JSON form is ``{"_type": TYPE, "_version": VERSION,
"_data": {...}}``; `genome_from_json` resolves ``_type`` only through the registry (never pickle).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar, Literal, TypeVar

from evoforge.errors import ConfigError
from evoforge.registry import Registry

G = TypeVar("G", bound="Genome")

GENOME_TYPES: Registry[type[Genome]] = Registry("genome type")


def register_genome(cls: type[G]) -> type[G]:
    """Class decorator: make ``cls`` loadable from JSON under its ``TYPE`` tag."""
    GENOME_TYPES.add(cls.TYPE, cls)
    return cls


@dataclasses.dataclass(frozen=True)
class Genome:
    """Base of all genomes: a frozen dataclass with a stable content hash.

    Subclasses whose fields are not plain JSON values (nested dataclasses, tuples of them)
    override `to_data` / `from_data`.
    """

    TYPE: ClassVar[str] = "genome"
    VERSION: ClassVar[int] = 1

    def to_data(self) -> dict[str, Any]:
        """The JSON-ready payload (without the type tag)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_data(cls: type[G], data: dict[str, Any], version: int) -> G:
        """Rebuild from `to_data` output written by ``version`` of this class."""
        if version != cls.VERSION:
            raise ConfigError(
                f"{cls.TYPE} genome version {version} is not supported (this evoforge reads {cls.VERSION})"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ConfigError(f"{cls.TYPE} genome has unknown fields {sorted(unknown)}")
        return cls(**{k: _tuplify(v) for k, v in data.items()})

    def to_json(self) -> str:
        """Canonical JSON with the type tag and version (computed once per instance)."""
        cached = self.__dict__.get("_json")
        if cached is None:
            cached = canonical_json({"_type": self.TYPE, "_version": self.VERSION, "_data": self.to_data()})
            object.__setattr__(self, "_json", cached)
        return cached

    @property
    def content_hash(self) -> str:
        """16 hex digits of sha256 over the canonical JSON; equal genomes hash equal."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
            object.__setattr__(self, "_hash", cached)
        return cached


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, finite floats only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def genome_from_json(text: str | dict[str, Any]) -> Genome:
    """Load any registered genome from its `Genome.to_json` form."""
    obj = json.loads(text) if isinstance(text, str) else text
    if not isinstance(obj, dict) or "_type" not in obj or "_data" not in obj:
        raise ConfigError("genome JSON must be an object with '_type', '_version' and '_data'")
    cls = GENOME_TYPES[obj["_type"]]
    return cls.from_data(obj["_data"], int(obj.get("_version", 1)))


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _tuplify(value: Any) -> Any:
    """JSON lists back to tuples so rebuilt genomes are hashable and compare equal."""
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


ParamKind = Literal["float", "log", "int", "choice", "bool"]


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One searchable hyperparameter: continuous (float/log), ordinal (int, or choice with
    ``ordinal=True``), categorical (choice) or bool."""

    name: str
    kind: ParamKind
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()
    ordinal: bool = False

    def validate(self, value: Any, where: str) -> None:
        if self.kind in ("float", "log"):
            if not isinstance(value, (int, float)) or not (self.low <= float(value) <= self.high):
                raise ConfigError(f"{where}.{self.name}={value!r} is out of range; use a number in [{self.low}, {self.high}]")
        elif self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not (self.low <= value <= self.high):
                raise ConfigError(f"{where}.{self.name}={value!r} is out of range; use an integer in [{int(self.low)}, {int(self.high)}]")
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{self.name}={value!r} must be true or false")
        elif value not in self.choices:
            raise ConfigError(f"{where}.{self.name}={value!r} is not valid; choose one of {list(self.choices)}")
