"""Model inputs of any structure: one tensor, a tuple of tensors, or a dict of named tensors.

A batch of inputs keeps the structure the user's model takes: ``model(x)`` for a tensor,
``model(*x)`` for a tuple, ``model(**x)`` for a dict (``input_ids`` + ``attention_mask``).
Dtypes are kept as given (int64 token ids stay int64). `call_model` runs a model on such a
batch and returns its output tensor, whatever container the model returns it in (a tensor, a
tuple, or an object with ``.logits`` such as a HuggingFace output). `ModelAdapter` turns any
model into one that takes its inputs as positional tensors in `InputSpec` order and returns a
tensor: that is the form every exported artifact has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import Tensor, nn

from evoforge.errors import ConfigError

Inputs: TypeAlias = "Tensor | tuple[Tensor, ...] | dict[str, Tensor]"
"""A batch of model inputs (rows along the first dimension of every tensor)."""

ArrayInputs: TypeAlias = "np.ndarray | tuple[np.ndarray, ...] | dict[str, np.ndarray]"
"""The same structure as numpy arrays."""


def structure_map(fn: Callable[[Any], Any], x: Any) -> Any:
    """Apply ``fn`` to every leaf of a tensor / tuple / dict structure, keeping the structure."""
    if isinstance(x, Mapping):
        return {k: fn(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return tuple(fn(v) for v in x)
    return fn(x)


def leaves(x: Any) -> list[Any]:
    """The leaves of a structure in order (dict values in key order as given)."""
    if isinstance(x, Mapping):
        return list(x.values())
    if isinstance(x, (tuple, list)):
        return list(x)
    return [x]


def rows(x: Any) -> int:
    """Number of examples in a batch structure (the first dimension of its first leaf)."""
    return int(len(leaves(x)[0]))


def take_rows(x: Any, index: Any) -> Any:
    """Rows ``index`` (a slice or an index array) of every leaf."""
    return structure_map(lambda a: a[index], x)


def concat(batches: Sequence[Any]) -> Any:
    """Concatenate batch structures along the first dimension (numpy or torch leaves)."""
    first = batches[0]
    cat = torch.cat if isinstance(leaves(first)[0], Tensor) else np.concatenate
    if isinstance(first, Mapping):
        return {k: cat([b[k] for b in batches]) for k in first}
    if isinstance(first, tuple):
        return tuple(cat([b[i] for b in batches]) for i in range(len(first)))
    return cat(list(batches))


def to_tensors(x: Any, device: str | torch.device = "cpu") -> Any:
    """numpy or torch leaves -> torch tensors on ``device`` with their dtypes kept."""
    return structure_map(lambda a: torch.as_tensor(a).to(device), x)


def to_arrays(x: Any) -> Any:
    """torch or numpy leaves -> numpy arrays (dtypes kept)."""
    return structure_map(lambda a: a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a), x)


def output_tensor(out: Any) -> Tensor:
    """The prediction tensor inside a model's output: the tensor itself, ``.logits`` of an
    output object or mapping, or the first element of a tuple or list."""
    if isinstance(out, Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise ConfigError(
        f"the model returned {type(out).__name__}; return a tensor, a tuple whose first element is the "
        "prediction tensor, or an object with a .logits tensor"
    )


def call_model(model: Callable[..., Any], x: Any) -> Tensor:
    """``model(x)``, ``model(*x)`` or ``model(**x)`` by the structure of ``x``; returns the output tensor."""
    if isinstance(x, Mapping):
        return output_tensor(model(**x))
    if isinstance(x, tuple):
        return output_tensor(model(*x))
    return output_tensor(model(x))


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The structure of one example's inputs: ``kind`` is "tensor", "tuple" or "dict";
    ``names`` are the dict keys (or ``input0``, ``input1``, ... otherwise), with each input's
    dtype and per-example shape."""

    kind: str
    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, batch: Any) -> InputSpec:
        """The spec of a batch structure (numpy or torch leaves)."""
        kind = "dict" if isinstance(batch, Mapping) else "tuple" if isinstance(batch, (tuple, list)) else "tensor"
        values = leaves(batch)
        names = tuple(str(k) for k in batch) if kind == "dict" else tuple(f"input{i}" for i in range(len(values)))
        dtypes = tuple(str(v.dtype).replace("torch.", "") for v in values)
        shapes = tuple(tuple(int(d) for d in v.shape[1:]) for v in values)
        return cls(kind, names, dtypes, shapes)

    def flatten(self, batch: Any) -> tuple[Any, ...]:
        """The inputs of ``batch`` as a positional tuple in `names` order."""
        return tuple(batch[n] for n in self.names) if self.kind == "dict" else tuple(leaves(batch))

    def unflatten(self, values: Sequence[Any]) -> Any:
        """Inverse of `flatten`."""
        if self.kind == "dict":
            return dict(zip(self.names, values))
        return tuple(values) if self.kind == "tuple" else values[0]

    def describe(self) -> list[dict[str, Any]]:
        """JSON-ready list of the inputs, in the order an exported artifact takes them."""
        return [{"name": n, "dtype": d, "shape": ["batch", *s]} for n, d, s in zip(self.names, self.dtypes, self.shapes)]


class ModelAdapter(nn.Module):
    """``model`` taking its inputs as positional tensors in ``spec`` order and returning the
    output tensor: the calling convention of every exported artifact."""

    def __init__(self, model: nn.Module, spec: InputSpec) -> None:
        super().__init__()
        self.model = model
        self.spec = spec

    def forward(self, *inputs: Tensor) -> Tensor:
        return call_model(self.model, self.spec.unflatten(inputs))


class Bf16Model(nn.Module):
    """``model`` (positional tensors in, a tensor out, as `ModelAdapter`) converted in place to
    compute in bfloat16 behind float32 edges: floating inputs are cast to bfloat16, the output
    back to float32; integer inputs (token ids) pass as they are."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(torch.bfloat16)

    def forward(self, *inputs: Tensor) -> Tensor:
        cast = (t.to(torch.bfloat16) if t.is_floating_point() else t for t in inputs)
        return self.model(*cast).float()  # type: ignore[no-any-return]


class ExportedModel(nn.Module):
    """An artifact that takes its inputs as positional tensors in ``spec`` order, callable the
    way the original model was: ``m(x)``, ``m(*x)`` or ``m(**x)``. User evaluation functions
    receive exported candidates in this form."""

    def __init__(self, artifact: nn.Module, spec: InputSpec) -> None:
        super().__init__()
        self.artifact = artifact
        self.spec = spec

    def forward(self, *args: Tensor, **kwargs: Tensor) -> Tensor:
        if kwargs:
            missing = [n for n in self.spec.names if n not in kwargs]
            if missing or args:
                raise ConfigError(f"call the model with the inputs {list(self.spec.names)} by name; missing {missing}")
            args = tuple(kwargs[n] for n in self.spec.names)
        return self.artifact(*args)  # type: ignore[no-any-return]
