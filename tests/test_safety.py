"""Nothing evoforge loads from a user file unpickles arbitrary objects. The one exception is
`evoforge.workload.callables.load_object`, which reads back the Python objects (a model, a Dataset,
a function) that a run started from Python stored in its own ``inputs/`` folder; docs/your-model.md
says what that trusts. The other is `evoforge.compression.prefix.PrefixCache.load`, which reads the
intermediate models this run's own workers wrote to ``RUN/cache/prefix``."""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "evoforge"


def source_lines():
    for path in SRC.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            yield path.relative_to(SRC), number, line


TRUSTED = {("workload/callables.py", "load_object"), ("compression/prefix.py", "load")}
"""(file, function) pairs allowed to unpickle: only run-internal stored objects."""


def _function_at(path, number):
    import ast

    tree = ast.parse((SRC / path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.lineno <= number <= node.end_lineno:
            return node.name
    return None


def test_no_unsafe_deserialization():
    unsafe = []
    for path, number, line in source_lines():
        code = line.split("#", 1)[0]
        if re.search(r"\bpickle\.loads?\(|\bdill\.|\bmarshal\.loads?\(|yaml\.load\(|yaml\.unsafe_load", code):
            unsafe.append(f"{path}:{number}: {line.strip()}")
        if "torch.load(" in code and "weights_only=True" not in code and (str(path), _function_at(path, number)) not in TRUSTED:
            unsafe.append(f"{path}:{number}: {line.strip()}")
        if "np.load(" in code and "allow_pickle=False" not in code:
            unsafe.append(f"{path}:{number}: {line.strip()}")
    assert unsafe == []


def test_unsafe_pattern_is_detected(tmp_path, monkeypatch):
    """The scan above can fail: it flags a torch.load without weights_only."""
    fake = tmp_path / "evoforge"
    fake.mkdir()
    (fake / "bad.py").write_text("state = torch.load(path)\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    flagged = [line for _, _, line in source_lines() if "torch.load(" in line]
    assert flagged == ["state = torch.load(path)"]


def test_stored_objects_are_only_loaded_from_inside_a_run():
    """Every caller of load_object resolves a ``run:`` reference against the run directory."""
    callers = [f"{path}:{number}" for path, number, line in source_lines()
               if "load_object(" in line.split("#", 1)[0] and "def load_object" not in line]
    assert callers and all("resolve_ref(" in line for path, number, line in source_lines()
                           if "load_object(" in line.split("#", 1)[0] and "def load_object" not in line and "import" not in line), callers
