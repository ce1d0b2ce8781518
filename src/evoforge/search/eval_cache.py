"""A content-addressed cache of evaluations that several runs share.

An entry is keyed by the SHA-256 of what decides an evaluation's result: the domain's identity
(`Domain.cache_identity`: for compress the task with its data fingerprints, the baseline
artifact's hash, the runtime, the objectives and the code, `evoforge.provenance`), the genome hash, the
candidate seed and the fidelity. An identity that names the machine (latencies differ between
processors) files each evaluation under the machine that timed it, which on a cluster of unlike
nodes need not be the driver's (`filed_identity`). Only OK evaluations are kept; a timeout or a crash says more
about the machine than the genome. Entries are written to a temporary folder and renamed into
place, so a reader never sees half an entry and concurrent writers of one key keep the first.

Layout: ``ROOT/<key[:2]>/<key>/evaluation.json`` plus ``files/<name>`` for each artifact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evoforge.errors import ConfigError
from evoforge.genome import canonical_json
from evoforge.layout import RunLayout
from evoforge.machine import MACHINE_METRIC
from evoforge.search.evaluation import Evaluation

HIT_METRIC = "cache_hit"
"""Set to True in the metrics of an evaluation taken from the cache."""


def filed_identity(identity: Mapping[str, Any], evaluation: Evaluation) -> Mapping[str, Any]:
    """The identity an evaluation is stored under: ``identity`` with its machine replaced by the
    one the evaluation's metrics say timed it (``identity`` itself when either does not say)."""
    timed_on = evaluation.metrics.get(MACHINE_METRIC)
    if MACHINE_METRIC not in identity or not isinstance(timed_on, str) or timed_on == identity[MACHINE_METRIC]:
        return identity
    return {**identity, MACHINE_METRIC: timed_on}


def cache_key(identity: Mapping[str, Any], genome_key: str, seed: int, fidelity: Mapping[str, Any] | None = None) -> str:
    """The entry key of one evaluation: changes when any of its inputs change."""
    record = {"domain": identity, "genome": genome_key, "seed": seed, "fidelity": dict(fidelity or {})}
    return hashlib.sha256(canonical_json(record).encode()).hexdigest()


class EvaluationCache:
    """The cache in folder ``root`` (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"eval_cache {self.root} is a file; give a folder (it is created when missing)")

    def _entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str, layout: RunLayout | None, genome_key: str) -> Evaluation | None:
        """The cached evaluation, marked as a hit, with its artifacts copied into the run's
        artifact folder for ``genome_key`` (None: no entry, or artifacts a run without a folder
        cannot hold)."""
        entry = self._entry(key)
        try:
            cached = Evaluation.from_json((entry / "evaluation.json").read_text())
        except (OSError, ValueError, TypeError, KeyError):
            return None
        artifacts: dict[str, str] = {}
        if cached.artifacts:
            if layout is None:
                return None
            target = layout.artifact_dir(genome_key)
            target.mkdir(parents=True, exist_ok=True)
            for name, relative in cached.artifacts.items():
                destination = target / Path(relative).name
                shutil.copyfile(entry / "files" / name, destination)
                artifacts[name] = layout.relative(destination)
        return dataclasses.replace(cached, artifacts=artifacts, metrics={**cached.metrics, HIT_METRIC: True})

    def put(self, key: str, evaluation: Evaluation, layout: RunLayout | None) -> bool:
        """Keep an OK evaluation and copies of its artifacts; True when a new entry was written."""
        if not evaluation.ok or evaluation.metrics.get(HIT_METRIC):
            return False
        entry = self._entry(key)
        if entry.exists():
            return False
        sources = {}
        for name, relative in evaluation.artifacts.items():
            path = layout.resolve(relative) if layout is not None else None
            if path is None or not path.is_file():
                return False  # an entry without its artifacts would be useless to export
            sources[name] = path
        staging = entry.parent / f".{key}.{uuid.uuid4().hex}"
        try:
            (staging / "files").mkdir(parents=True)
            for name, path in sources.items():
                shutil.copyfile(path, staging / "files" / name)
            (staging / "evaluation.json").write_text(evaluation.to_json())
            os.rename(staging, entry)
        except OSError:
            return False  # another run wrote the key first, or the disk is full: the run goes on
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True
