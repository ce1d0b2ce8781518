"""Bad input gives one line naming the bad value and the fix, exit code 2, no traceback, and
leaves an existing run untouched."""

import hashlib
import os
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from evoforge.store import SCHEMA_VERSION

EVOFORGE = [sys.executable, "-m", "evoforge.cli"]


def bad(*args, cwd=None):
    proc = subprocess.run([*EVOFORGE, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(cwd) if cwd else os.environ.get("PYTHONPATH", "")})
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("evoforge: error:") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def digest(path):
    """Content of every run file (SQLite's transient -wal/-shm files and the lock file excepted)."""
    transient = ("-wal", "-shm", ".lock")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())
            if p.is_file() and not p.name.endswith(transient)}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "zdt"
    subprocess.run([*EVOFORGE, "search", "--problem", "zdt1", "--budget", "16", "--pop-size", "4", "--run", str(run), "--quiet"],
                   check=True, capture_output=True)
    return run


def test_user_code_problems(tmp_path):
    (tmp_path / "usermodels.py").write_text(
        "import torch\n"
        "def raises():\n    raise RuntimeError('no weights here')\n"
        "def wrong_classes():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))\n"
    )
    cfg = tmp_path / "t.yaml"
    for factory, message in [("usermodels:raises", "no weights here"), ("usermodels:wrong_classes", "3"),
                             ("usermodels:missing", "missing")]:
        cfg.write_text(f"task:\n  name: t\n  model: {factory}\n  dataset: digits\nsearch:\n  budget: 2\n")
        line = bad("compress", cfg, "--run", tmp_path / f"run-{factory.split(':')[1]}", cwd=tmp_path)
        assert message in line


def test_bad_data(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{a}_{s}": rng.random((20, 64)).astype(np.float32) if a == "x" else rng.integers(0, 10, 20)
              for s in ("train", "calib", "val", "test") for a in ("x", "y")}
    arrays["x_val"][3, 5] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"task:\n  name: t\n  model: digits_mlp\n  dataset: {tmp_path / 'nan.npz'}\n")
    assert "NaN" in bad("compress", cfg, "--run", tmp_path / "r1")
    del arrays["y_test"]
    arrays["x_val"][3, 5] = 0.0
    np.savez(tmp_path / "missing.npz", **arrays)
    cfg.write_text(f"task:\n  name: t\n  model: digits_mlp\n  dataset: {tmp_path / 'missing.npz'}\n")
    assert "y_test" in bad("compress", cfg, "--run", tmp_path / "r2")


def test_unknown_names_list_valid_ones(tmp_path):
    assert "valid names" in bad("compress", "--task", "digits-mlp", "--objectives", "speed", "--run", tmp_path / "a")
    assert "valid names: nsga2, petra, random" in bad("compress", "--task", "digits-mlp", "--algorithm", "cma", "--run", tmp_path / "b")
    assert "valid: local, ray" in bad("search", "--problem", "zdt1", "--executor", "slurm", "--run", tmp_path / "c")
    (tmp_path / "afile").write_text("")
    assert "is a file; give a folder" in bad("search", "--problem", "zdt1", "--eval-cache", tmp_path / "afile", "--run", tmp_path / "e")
    assert "no cheaper fidelity to screen at" in bad("search", "--problem", "zdt1", "--rungs", "0.5,1", "--run", tmp_path / "f")
    assert "end at 1" in bad("search", "--problem", "zdt1", "--rungs", "1,0.5", "--run", tmp_path / "g")
    assert "unknown promotion schedule 'eager'; valid: asynchronous, synchronous" in bad(
        "search", "--problem", "zdt1", "--rungs", "0.5,1", "--schedule", "eager", "--run", tmp_path / "k")
    assert "invalid choice: 'steps' (choose from 'epochs', 'examples')" in bad(
        "compress", "--task", "digits-mlp", "--rungs", "0.25,1", "--screen-by", "steps", "--run", tmp_path / "j")
    assert "petra algorithm only" in bad("search", "--problem", "zdt1", "--algorithm", "nsga2", "--preselect", "4", "--run", tmp_path / "d")
    assert "explore=2.0 is invalid" in bad("search", "--problem", "zdt1", "--algorithm", "petra", "--explore", "2", "--run", tmp_path / "h")
    assert "patience=0 is invalid; use a positive integer" in bad("search", "--problem", "zdt1", "--patience", "0", "--run", tmp_path / "i")


def test_existing_run_is_never_changed(finished_run):
    before = digest(finished_run)
    assert "already holds a run" in bad("search", "--problem", "zdt2", "--run", finished_run)
    assert "no front member with id 9999" in bad("export", finished_run, "--id", 9999)
    assert digest(finished_run) == before


def test_incompatible_schema_version(finished_run, tmp_path):
    copy = tmp_path / "old"
    copy.mkdir()
    (copy / "run.db").write_bytes((finished_run / "run.db").read_bytes())
    db = sqlite3.connect(copy / "run.db")
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 7),))
    db.commit()
    db.close()
    before = digest(copy)
    assert f"schema version {SCHEMA_VERSION + 7}" in bad("show", copy)
    assert f"schema version {SCHEMA_VERSION + 7}" in bad("resume", copy)
    assert digest(copy) == before


def test_second_driver_gets_a_lock_error(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([*EVOFORGE, "search", "--problem", "zdt1", "--budget", "20m", "--pop-size", "4", "--run", str(run),
                              "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (run / "run.db").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        assert "in use by another evoforge process" in bad("resume", run)
    finally:
        first.kill()
        first.wait()


def test_run_path_that_cannot_be_a_folder(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    assert f"run directory {afile} is a file; give a folder" in bad("search", "--problem", "zdt1", "--run", afile)
    assert f"cannot create run directory {afile / 'run'}: Not a directory" in bad("search", "--problem", "zdt1", "--run", afile / "run")
    assert "is a file" in bad("compress", "--task", "digits-mlp", "--run", afile)
    assert "is a file" in bad("evolve", "--task", "digits-mlp", "--run", afile)
    assert f"cannot append events to {tmp_path}: Is a directory" in bad("search", "--problem", "zdt1", "--log-json", tmp_path,
                                                                         "--run", tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert afile.read_text() == "mine"


def test_report_path_that_is_not_a_report(finished_run, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    assert "is not an evoforge report" in bad("report", finished_run, "--out", afile)
    assert f"report folder {afile} is a file; give a folder" in bad("report", finished_run, "--out", afile / "r.html")
    assert afile.read_text() == "mine"


@pytest.mark.parametrize("section, message", [
    ("constraints:\n  max_quality_drop: abc\n", "max_quality_drop must be a number >= 0 (or None: no constraint), got 'abc'"),
    ("constraints:\n  relative: maybe\n", "relative must be true or false, got 'maybe'"),
    ("objectives: [size_ratio, size_ratio]\n", "objective 'size_ratio' is listed twice"),
    ("objectives: 5\n", "objectives must be a list of names, got 5"),
])
def test_config_values_of_the_wrong_kind(tmp_path, section, message):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("task: digits-mlp\n" + section)
    assert message in bad("compress", cfg, "--run", tmp_path / "r")
    assert not (tmp_path / "r").exists()
