"""A bounded on-disk cache of compiled programs: identical program texts compile once.

Different edit lists often produce the same program (a deleted op that repair restores, edits
of dead code, copies that land where the same value already was). A variant's vmfb is stored
under the hash of everything that decides the compiler's output (program text, input type,
target, flags, the compiler's version and the processor that ``--iree-llvmcpu-target-cpu=host``
compiles for, so a run resumed after an upgrade or on another machine compiles again); workers of
one run share the directory. Writes are atomic (a temporary file
renamed into place), a hit refreshes the entry's time, and when the entries exceed the size
bound the least recently used go first. Only successful compiles are cached: a failure may be
a timeout that another try would not repeat.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

from evoforge.disk_cache import BoundedDiskCache


@functools.lru_cache(maxsize=1)
def compiler_identity() -> str:
    """The IREE compiler's version and this processor's model and kernel features."""
    from evoforge.machine import processor
    from evoforge.provenance import library_versions

    model, features = processor()
    return f"iree-base-compiler {library_versions(['iree-base-compiler'])['iree-base-compiler']}; {model} {' '.join(features)}"


def compile_key(text: str, *, input_type: str, target: str, extra_flags: Sequence[str], compiler: str | None = None) -> str:
    """The cache key of a compile: a SHA-256 over the text, every compiler setting and ``compiler``
    (default `compiler_identity`)."""
    digest = hashlib.sha256()
    for part in (compiler_identity() if compiler is None else compiler, input_type, target, *extra_flags):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(text.encode())
    return digest.hexdigest()


class CompileCache(BoundedDiskCache):
    """vmfb files by compile key in ``directory``, at most ``max_bytes`` of them in total."""

    SUFFIX = ".vmfb"
