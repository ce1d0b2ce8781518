"""A bounded on-disk cache of byte blobs by key, shared by the worker processes of one run.

Writes are atomic (a temporary file renamed into place), a hit refreshes the entry's time, and
when the entries exceed the size bound the least recently used go first. A reader that loses a
race with eviction sees a miss. Used for evolve's compiled programs
(`evoforge.mlir.compile_cache`) and compress's intermediate models (`evoforge.compression.prefix`).
"""

from __future__ import annotations

import os
from pathlib import Path


class BoundedDiskCache:
    """Files ``<key><SUFFIX>`` in ``directory``, at most ``max_bytes`` of them in total."""

    SUFFIX = ".bin"

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{self.SUFFIX}"

    def get(self, key: str) -> bytes | None:
        """The cached bytes, or None; a hit marks the entry as recently used."""
        path = self._path(key)
        try:
            data = path.read_bytes()
            os.utime(path)
        except FileNotFoundError:  # absent, or evicted by another worker just now
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` (unless it alone exceeds the bound), then evict down to the bound."""
        if len(data) > self.max_bytes:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        scratch = self.directory / f".{key}.{os.getpid()}.tmp"
        scratch.write_bytes(data)
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
