"""Prefix reuse: pipelines that share their first stages start from the stored intermediate model.

Each stage runs with a seed derived from the run's prefix seed and the pipeline up to and
including that stage (its training settings too), never from the whole genome, so the model
after the first k stages is one function of those k stages. `apply_with_prefixes` stores that
model after every stage in a bounded on-disk cache shared by the run's workers, and a pipeline
starts from the longest stored prefix of its own: the result is bit-identical to computing it
from the baseline (tested), only cheaper. Entries are also keyed by the code that computed them
(`PrefixCache`'s ``code``), so a run resumed after evoforge or torch changed recomputes its prefixes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
from typing import Any

from evoforge.compression.genome import PipelineGenome
from evoforge.disk_cache import BoundedDiskCache
from evoforge.genome import canonical_json


class PrefixCache(BoundedDiskCache):
    """Intermediate models (``torch.save`` of the whole module) by prefix key and ``code`` (an
    identity of the code that computes a stage, e.g. a digest of `evoforge.provenance.code_identity`):
    an entry stored by other code is a miss."""

    SUFFIX = ".pt"

    def __init__(self, directory: Any, max_bytes: int, code: str = "") -> None:
        super().__init__(directory, max_bytes)
        self.code = code

    def _entry(self, key: str) -> str:
        return hashlib.sha256(f"{self.code}\0{key}".encode()).hexdigest()[:32]

    def load(self, key: str) -> Any | None:
        """The stored model, or None (absent, evicted, stored by other code, or unreadable)."""
        import torch

        data = self.get(self._entry(key))
        if data is None:
            return None
        try:
            return torch.load(io.BytesIO(data), weights_only=False)  # written by this run's own workers
        except Exception:  # noqa: BLE001 - a damaged entry is a miss
            return None

    def save(self, key: str, model: Any) -> None:
        """Store ``model`` (a model that does not pickle is simply not stored)."""
        import torch

        buffer = io.BytesIO()
        try:
            torch.save(model, buffer)
        except Exception:  # noqa: BLE001 - e.g. a module holding a lambda: recompute it next time
            return
        self.put(self._entry(key), buffer.getvalue())


def prefix_keys(genome: PipelineGenome, prefix_seed: int, examples_fraction: float = 1.0) -> list[str]:
    """Key of the pipeline's first k+1 stages (with its training settings, and the share of each
    epoch's examples its training visits when below 1) for each stage k."""
    training = dataclasses.asdict(genome.training)
    keys = []
    for k in range(1, len(genome.stages) + 1):
        record: dict[str, object] = {"seed": prefix_seed, "training": training,
                                     "stages": [[s.kind, [list(p) for p in s.params]] for s in genome.stages[:k]]}
        if examples_fraction < 1.0:
            record["examples_per_epoch"] = examples_fraction
        keys.append(hashlib.sha256(canonical_json(record).encode()).hexdigest()[:32])
    return keys


def stage_seed(key: str) -> int:
    """The 31-bit seed a stage runs with, from its prefix key."""
    return int(key[:8], 16) & 0x7FFFFFFF


def apply_with_prefixes(baseline: Any, genome: PipelineGenome, prefix_seed: int, run_stage: Any,
                        cache: PrefixCache | None, examples_fraction: float = 1.0) -> tuple[Any, int]:
    """The baseline (a copy) with the pipeline applied, and how many of its stages came from
    the cache. ``run_stage(model, stage, seed)`` applies one stage; ``examples_fraction`` is the
    share of each epoch that its training visits (`evoforge.workload.training.examples_per_epoch`)."""
    keys = prefix_keys(genome, prefix_seed, examples_fraction)
    start, model = 0, None
    if cache is not None:
        for k in range(len(keys), 0, -1):
            model = cache.load(keys[k - 1])
            if model is not None:
                start = k
                break
    if model is None:
        model = copy.deepcopy(baseline)
    for k in range(start, len(keys)):
        model = run_stage(model, genome.stages[k], stage_seed(keys[k]))
        if cache is not None:
            cache.save(keys[k], model)
    return model, start
