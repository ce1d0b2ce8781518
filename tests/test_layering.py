"""The package's layers: the two domains share the workload layer and never import each other;
the engine and the workload layer import no domain."""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "evoforge"


def imports_of(package: str) -> set[str]:
    found = set()
    for path in (SRC / package).rglob("*.py"):
        found |= set(re.findall(r"^\s*(?:from|import)\s+(evoforge(?:\.\w+)*)", path.read_text(), re.MULTILINE))
    return found


def test_domains_never_import_each_other():
    assert not {m for m in imports_of("mlir") if m.startswith("evoforge.compression")}
    assert not {m for m in imports_of("compression") if m.startswith("evoforge.mlir")}
    assert any(m.startswith("evoforge.workload") for m in imports_of("mlir"))
    assert any(m.startswith("evoforge.workload") for m in imports_of("compression"))


def test_lower_layers_import_no_domain():
    for package in ("search", "workload", "store", "pareto", "runtimes"):
        assert not {m for m in imports_of(package) if m.startswith(("evoforge.compression", "evoforge.mlir"))}, package


def test_the_scan_sees_imports(tmp_path, monkeypatch):
    """imports_of can fail: it finds a planted import."""
    (tmp_path / "mlir").mkdir()
    (tmp_path / "mlir" / "x.py").write_text("from evoforge.compression.domain import CompressDomain\n")
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    assert imports_of("mlir") == {"evoforge.compression.domain"}
