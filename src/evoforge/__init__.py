"""evoforge: evolve cheaper versions of a neural network.

The package import is light (numpy only): torch, IREE and Ray load when a feature needs them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "optimize": "evoforge.api",
    "resume": "evoforge.api",
    "load_front": "evoforge.api",
    "export_member": "evoforge.api",
    "export_front": "evoforge.api",
    "explain_member": "evoforge.api",
    "minimize": "evoforge.api",
    "write_report": "evoforge.report",
    "compress": "evoforge.compression.api",
    "available_runtimes": "evoforge.compression.api",
    "evolve": "evoforge.mlir.api",
    "Front": "evoforge.front",
    "Member": "evoforge.front",
    "Termination": "evoforge.search.termination",
    "Search": "evoforge.search.engine",
    "Domain": "evoforge.search.domain",
    "Evaluation": "evoforge.search.evaluation",
    "Status": "evoforge.search.evaluation",
    "Objective": "evoforge.pareto",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evoforge' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
