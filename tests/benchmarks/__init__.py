"""Tests of the benchmark scripts' harnesses (benchmarks/ is not a package: `benchmark_module`)."""

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def benchmark_module(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (with its own imports of the folder's helpers)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))
