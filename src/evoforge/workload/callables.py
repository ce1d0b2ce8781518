"""User code and user objects: ``"pkg.module:function"`` / ``"path/file.py:function"`` specs,
content hashes of referenced files, and the one place where a run stores Python objects.

A run started from Python objects (a model, a Dataset, an evaluation function) keeps them in its
``inputs/`` folder as cloudpickle files so that worker processes and a later ``resume`` get the
very same objects. Loading such a file runs code from it: `load_object` is the only function
that unpickles, and it only reads files inside a run directory, which the user created.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evoforge.errors import ConfigError

RUN_PREFIX = "run:"
"""References to files inside the run directory are written ``run:<relative path>``."""


def is_spec(value: Any) -> bool:
    """True for a ``"module:function"`` / ``"file.py:function"`` string."""
    return isinstance(value, str) and ":" in value and not value.startswith(RUN_PREFIX)


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """Resolve ``"pkg.module:function"`` or ``"path/to/file.py:function"`` to the function.

    Raises `ConfigError` when the module does not import or has no such callable.
    """
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise ConfigError(f"{what} {spec!r} is not of the form 'pkg.module:function' or 'path/to/file.py:function'")
    try:
        if module_part.endswith(".py"):
            module = _file_module(Path(module_part), what)
        else:
            module = importlib.import_module(module_part)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{what} module {module_part!r} does not import ({type(exc).__name__}: {exc}); fix the module or the path"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{what} {spec!r}: module {module_part!r} has no callable {attr!r}; check the function name")
    return fn  # type: ignore[no-any-return]


def _file_module(path: Path, what: str) -> Any:
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"{what} file {str(path)!r} does not exist; give an existing .py path")
    name = "_evoforge_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    module = sys.modules.get(name)
    if module is not None:
        return module
    file_spec = importlib.util.spec_from_file_location(name, path)
    if file_spec is None or file_spec.loader is None:
        raise ConfigError(f"{what} file {str(path)!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[name] = module
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def absolute_spec(spec: str, base: Path | None = None) -> str:
    """``spec`` with a relative ``file.py`` part made absolute (relative to ``base``, default the
    working directory); module specs and other strings are returned unchanged."""
    module_part, sep, attr = spec.rpartition(":")
    if sep and module_part.endswith(".py") and not Path(module_part).is_absolute():
        return f"{((base or Path.cwd()) / module_part).resolve()}:{attr}"
    return spec


def absolute_path(path: str, base: Path | None = None) -> str:
    """A file path made absolute (relative paths are taken from ``base`` or the working directory)."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else ((base or Path.cwd()) / p).resolve())


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def spec_file(spec: str) -> str | None:
    """The ``.py`` file of a ``file.py:function`` spec, else None."""
    module_part, sep, _ = spec.rpartition(":")
    return module_part if sep and module_part.endswith(".py") else None


def save_object(obj: Any, path: Path) -> str:
    """Write ``obj`` with cloudpickle (classes and functions defined in ``__main__`` or a
    notebook are stored by value); returns the file's sha256."""
    try:
        import cloudpickle
    except ImportError:
        raise ImportError("storing Python objects in a run needs cloudpickle: pip install cloudpickle") from None
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp, pickle_module=cloudpickle)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot store {type(obj).__name__} in the run ({type(exc).__name__}: {exc}); "
                          "pass a factory 'pkg.module:function' instead") from None
    tmp.replace(path)
    return file_sha256(path)


def load_object(path: Path) -> Any:
    """Load an object that `save_object` wrote into a run. This unpickles, so it trusts the run
    directory: only resume, show or export runs you created."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)  # trusted: written by save_object into the run
