"""A bounded on-disk cache of compiled programs: identical program texts compile once.

Different edit lists often produce the same program (a deleted op that repair restores, edits
of dead code, copies that land where the same value already was). A variant's vmfb is stored
under the hash of everything that decides the compiler's output (program text, input type,
target, flags); workers of one run share the directory. Writes are atomic (a temporary file
renamed into place), a hit refreshes the entry's time, and when the entries exceed the size
bound the least recently used go first. Only successful compiles are cached: a failure may be
a timeout that another try would not repeat.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path


def compile_key(text: str, *, input_type: str, target: str, extra_flags: Sequence[str]) -> str:
    """The cache key of a compile: a SHA-256 over the text and every compiler setting."""
    digest = hashlib.sha256()
    for part in (input_type, target, *extra_flags):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(text.encode())
    return digest.hexdigest()


class CompileCache:
    """vmfb files by key in ``directory``, at most ``max_bytes`` of them in total."""

    SUFFIX = ".vmfb"

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{self.SUFFIX}"

    def get(self, key: str) -> bytes | None:
        """The cached vmfb, or None; a hit marks the entry as recently used."""
        path = self._path(key)
        try:
            data = path.read_bytes()
            os.utime(path)
        except FileNotFoundError:  # absent, or evicted by another worker just now
            return None
        return data

    def put(self, key: str, vmfb: bytes) -> None:
        """Store ``vmfb`` (unless it alone exceeds the bound), then evict down to the bound."""
        if len(vmfb) > self.max_bytes:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        scratch = self.directory / f".{key}.{os.getpid()}.tmp"
        scratch.write_bytes(vmfb)
        scratch.replace(self._path(key))
        self._evict()

    def size_bytes(self) -> int:
        return sum(size for _, _, size in self._entries())

    def _entries(self) -> list[tuple[float, Path, int]]:
        entries = []
        for path in self.directory.glob(f"*{self.SUFFIX}"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, path, stat.st_size))
        return sorted(entries)

    def _evict(self) -> None:
        entries = self._entries()
        total = sum(size for _, _, size in entries)
        for _, path, size in entries:  # oldest use first
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
