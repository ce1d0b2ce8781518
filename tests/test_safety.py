"""Nothing evoforge loads from a run directory or user file unpickles arbitrary objects."""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "evoforge"


def source_lines():
    for path in SRC.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            yield path.relative_to(SRC), number, line


def test_no_unsafe_deserialization():
    unsafe = []
    for path, number, line in source_lines():
        code = line.split("#", 1)[0]
        if re.search(r"\bpickle\.loads?\(|\bdill\.|\bmarshal\.loads?\(|yaml\.load\(|yaml\.unsafe_load", code):
            unsafe.append(f"{path}:{number}: {line.strip()}")
        if "torch.load(" in code and "weights_only=True" not in code:
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
