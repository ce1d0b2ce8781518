"""Which code produced a result: evoforge's own source and the libraries a domain depends on.

The shared evaluation cache keys its entries by `code_identity`, so an evaluation stored by other
code (an edited or upgraded evoforge, another torch or ONNX Runtime) is computed again rather than
reused. evoforge's version number alone would not do: it does not change with every change to how
an evaluation is computed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from collections.abc import Iterable
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=4)
def source_digest(root: Path = PACKAGE_ROOT) -> str:
    """A hash of every Python file under ``root`` (paths and contents): changes with any edit."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def library_versions(distributions: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each distribution (None where it is not installed), read from
    package metadata without importing it."""
    versions: dict[str, str | None] = {}
    for name in distributions:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def code_identity(distributions: Iterable[str] = ()) -> dict[str, object]:
    """evoforge's version and source digest, with the versions of ``distributions``."""
    from evoforge import __version__

    return {"evoforge": __version__, "source": source_digest(), "libraries": library_versions(distributions)}
