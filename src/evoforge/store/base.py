"""The run store interface: everything needed to inspect or resume a run.

Contract (checked by ``evoforge.testing.store_conformance``):
  * One writer: only the driver process writes; readers may open the same store read-only.
  * Genomes are stored once per content hash; an evaluation is stored at most once per hash
    (a second `put_evaluation` for the same hash raises `StoreError`).
  * Every ``put_*`` is durable when it returns (a driver killed right after loses nothing).
  * Returned records are fresh copies: mutating them never changes the store.
  * Batches and generations are keyed by generation index; a generation record is written only
    after every member of its batch has an evaluation.
  * Screening evaluations (multi-fidelity runs: a candidate measured at a fraction of full
    fidelity) are kept apart from `evaluations`, at most one per (hash, fraction); the front and
    every summary read full-fidelity evaluations only.
"""

from __future__ import annotations

import abc
from typing import Any

from evoforge.search.evaluation import Evaluation

SCHEMA_VERSION = 1


class RunStore(abc.ABC):
    """Abstract run store; see the module docstring for the contract."""

    @abc.abstractmethod
    def put_config(self, config: dict[str, Any]) -> None:
        """Write the run configuration (once, when the run is created)."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any] | None:
        """The run configuration, or None for a new store."""

    @abc.abstractmethod
    def put_meta(self, key: str, value: Any) -> None:
        """Set a JSON value under ``key`` (overwrites)."""

    @abc.abstractmethod
    def meta(self, key: str, default: Any = None) -> Any:
        """The JSON value under ``key``."""

    @abc.abstractmethod
    def put_genome(self, key: str, genome_json: str) -> None:
        """Store a genome under its content hash (a no-op when already present)."""

    @abc.abstractmethod
    def genome(self, key: str) -> str:
        """The genome JSON for ``key``; `StoreError` when absent."""

    @abc.abstractmethod
    def put_evaluation(self, key: str, evaluation: Evaluation, generation: int) -> None:
        """Record the evaluation of genome ``key`` made in ``generation``."""

    @abc.abstractmethod
    def evaluations(self) -> dict[str, Evaluation]:
        """Every stored evaluation by genome hash, in insertion order."""

    @abc.abstractmethod
    def evaluation_generations(self) -> dict[str, int]:
        """The generation in which each stored evaluation was made."""

    @abc.abstractmethod
    def put_screening(self, key: str, fraction: float, evaluation: Evaluation, generation: int) -> None:
        """Record genome ``key``'s evaluation at fidelity ``fraction`` (< 1); a second one for the
        same (key, fraction) raises `StoreError`."""

    @abc.abstractmethod
    def screenings(self) -> dict[float, dict[str, Evaluation]]:
        """Screening evaluations by fraction, then genome hash, in insertion order."""

    @abc.abstractmethod
    def put_batch(self, generation: int, batch: dict[str, Any]) -> None:
        """Record the candidates asked for in ``generation`` before any is evaluated."""

    @abc.abstractmethod
    def batch(self, generation: int) -> dict[str, Any] | None:
        """The batch record of ``generation``, or None."""

    @abc.abstractmethod
    def put_generation(self, generation: int, record: dict[str, Any]) -> None:
        """Record the population and search state at the end of ``generation``."""

    @abc.abstractmethod
    def generations(self) -> list[dict[str, Any]]:
        """All generation records, oldest first."""

    def close(self) -> None:
        """Release files and locks."""

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
