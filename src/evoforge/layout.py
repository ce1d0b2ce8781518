"""`RunLayout`: the one object that knows where things live in a run directory.

    run.db              the store (every genome, evaluation, generation, RNG state)
    inputs/             what the run keeps of the user's inputs (stored objects, arrays)
    baseline/           the trained reference, its exported artifact and numbers (compress)
    program/            the pristine program, its data and compiled module (evolve)
    artifacts/<key>/    each evaluated candidate's artifacts (the front's only, where the domain
                        prunes them: `KEEP_ARTIFACTS`)
    exports/<id>/       what ``evoforge export`` writes

The engine creates the layout and hands it to the domain; domains keep no run paths of their
own, and paths stored in evaluations are relative to the root, so a run can be moved and opened
from any working directory.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from evoforge.errors import ConfigError

STORE_FILE = "run.db"
KEEP_ARTIFACTS = ("front", "all")
"""Whose artifacts a run keeps, where its domain can rebuild them (`Domain.prunes_artifacts`): the
front members' (the rest are deleted as they leave the front), or every candidate's."""


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """Paths of one run directory (``root`` is made absolute)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    def create(self) -> None:
        """Make the run directory and its parents (`make_folder`)."""
        make_folder(self.root, "run directory")

    @property
    def store(self) -> Path:
        return self.root / STORE_FILE

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def baseline(self) -> Path:
        return self.root / "baseline"

    @property
    def program(self) -> Path:
        return self.root / "program"

    @property
    def prefix_cache(self) -> Path:
        """Intermediate models of pipeline prefixes by key (compress's bounded prefix cache)."""
        return self.root / "cache" / "prefix"

    @property
    def compile_cache(self) -> Path:
        """Compiled programs by content hash (evolve's bounded compile cache)."""
        return self.root / "cache" / "vmfb"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def artifact_dir(self, key: str) -> Path:
        """Where the candidate with genome hash ``key`` keeps its artifacts."""
        return self.artifacts / key

    def export_dir(self, member_id: int) -> Path:
        """Default output folder of ``evoforge export --id member_id``."""
        return self.root / "exports" / str(member_id)

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, as stored in evaluations."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def resolve(self, relative: str) -> Path:
        """The absolute path of a path stored relative to the root."""
        return self.root / relative

    def holds_run(self) -> bool:
        return self.store.exists()


def make_folder(path: Path, what: str) -> bool:
    """Make the folder ``path`` and its parents; True when this made it. A path that cannot be a
    writable folder (a file, a file's child, no permission) is a `ConfigError` naming it as
    ``what`` (e.g. "run directory"), raised before anything is written."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file; give a folder")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {path}: {exc.strerror or exc}; give a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path} is not writable; give a folder you can write to")
    return created


def default_run_dir(name: str) -> Path:
    """``runs/<name>-<time>`` (relative to the working directory)."""
    return Path("runs") / f"{Path(name).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
