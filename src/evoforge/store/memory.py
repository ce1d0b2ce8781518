"""In-memory run store: the library default when no run directory is given."""

from __future__ import annotations

import copy
import json
from typing import Any

from evoforge.errors import StoreError
from evoforge.search.evaluation import Evaluation
from evoforge.store.base import RunStore


class MemoryRunStore(RunStore):
    def __init__(self) -> None:
        self._config: dict[str, Any] | None = None
        self._meta: dict[str, str] = {}
        self._genomes: dict[str, str] = {}
        self._evaluations: dict[str, tuple[str, int]] = {}
        self._screenings: dict[tuple[str, float], str] = {}
        self._batches: dict[int, str] = {}
        self._generations: dict[int, str] = {}

    def put_config(self, config: dict[str, Any]) -> None:
        if self._config is not None:
            raise StoreError("the run configuration is already written")
        self._config = json.loads(json.dumps(config))

    def config(self) -> dict[str, Any] | None:
        return copy.deepcopy(self._config)

    def put_meta(self, key: str, value: Any) -> None:
        self._meta[key] = json.dumps(value)

    def meta(self, key: str, default: Any = None) -> Any:
        return json.loads(self._meta[key]) if key in self._meta else default

    def put_genome(self, key: str, genome_json: str) -> None:
        self._genomes.setdefault(key, genome_json)

    def genome(self, key: str) -> str:
        try:
            return self._genomes[key]
        except KeyError:
            raise StoreError(f"no genome {key!r} in this run") from None

    def put_evaluation(self, key: str, evaluation: Evaluation, generation: int) -> None:
        if key in self._evaluations:
            raise StoreError(f"genome {key} already has an evaluation")
        self._evaluations[key] = (evaluation.to_json(), generation)

    def evaluations(self) -> dict[str, Evaluation]:
        return {k: Evaluation.from_json(v) for k, (v, _) in self._evaluations.items()}

    def evaluation_generations(self) -> dict[str, int]:
        return {k: g for k, (_, g) in self._evaluations.items()}

    def put_screening(self, key: str, fraction: float, evaluation: Evaluation, generation: int) -> None:
        if (key, float(fraction)) in self._screenings:
            raise StoreError(f"genome {key} already has an evaluation at fidelity {fraction}")
        self._screenings[(key, float(fraction))] = evaluation.to_json()

    def screenings(self) -> dict[float, dict[str, Evaluation]]:
        out: dict[float, dict[str, Evaluation]] = {}
        for (key, fraction), text in self._screenings.items():
            out.setdefault(fraction, {})[key] = Evaluation.from_json(text)
        return out

    def put_batch(self, generation: int, batch: dict[str, Any]) -> None:
        self._batches[generation] = json.dumps(batch)

    def batch(self, generation: int) -> dict[str, Any] | None:
        text = self._batches.get(generation)
        return None if text is None else dict(json.loads(text))

    def put_generation(self, generation: int, record: dict[str, Any]) -> None:
        self._generations[generation] = json.dumps(record)

    def generations(self) -> list[dict[str, Any]]:
        return [json.loads(self._generations[g]) for g in sorted(self._generations)]
