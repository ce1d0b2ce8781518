"""The compile cache: keys cover everything that decides the compiler's output, entries come back
byte for byte, and the least recently used go first once the size bound is passed."""

from __future__ import annotations

import os
import time

import pytest

from evoforge.mlir.compile_cache import CompileCache, compile_key, compiler_identity


def test_keys_change_with_the_text_every_compiler_setting_and_the_compiler() -> None:
    base = {"input_type": "torch", "target": "llvm-cpu", "extra_flags": ["--iree-opt-level=O2"]}
    key = compile_key("func.func @main()", **base)
    assert key == compile_key("func.func @main()", **base)
    assert key != compile_key("func.func @main() ", **base)
    assert key != compile_key("func.func @main()", **{**base, "input_type": "none"})
    assert key != compile_key("func.func @main()", **{**base, "target": "cuda"})
    assert key != compile_key("func.func @main()", **{**base, "extra_flags": ["--iree-opt-level=O3"]})
    assert key != compile_key("func.func @main()", **{**base, "extra_flags": ["--iree-opt-level=O2", ""]})
    assert key == compile_key("func.func @main()", **base, compiler=compiler_identity())
    assert key != compile_key("func.func @main()", **base, compiler="iree-base-compiler 3.14.0; the same processor")


def test_entries_round_trip_and_the_least_recently_used_are_evicted(tmp_path) -> None:
    cache = CompileCache(tmp_path / "vmfb", max_bytes=250)
    assert cache.get("a") is None
    for key in ("a", "b"):
        cache.put(key, key.encode() * 100)
    past = time.time() - 100
    os.utime(cache.directory / "a.vmfb", (past, past))
    os.utime(cache.directory / "b.vmfb", (past + 1, past + 1))
    assert cache.get("a") == b"a" * 100  # a hit makes "a" the most recently used
    cache.put("c", b"c" * 100)  # 300 bytes > 250: the oldest use ("b") goes
    assert cache.get("b") is None and cache.get("a") == b"a" * 100 and cache.get("c") == b"c" * 100
    assert cache.size_bytes() == 200
    cache.put("huge", b"x" * 300)  # larger than the whole bound: not stored, nothing evicted
    assert cache.get("huge") is None and cache.size_bytes() == 200
    assert not list(cache.directory.glob(".*.tmp"))
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        CompileCache(tmp_path, 0)
