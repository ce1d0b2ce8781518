"""A conformance suite every `RunStore` implementation must pass.

Subclass `StoreConformance` in a test module and provide a ``store`` fixture returning a fresh,
empty store; pytest collects the inherited tests.
"""

from __future__ import annotations

import pytest

from evoforge.errors import StoreError
from evoforge.search.evaluation import Evaluation, Status
from evoforge.store.base import RunStore


class StoreConformance:
    """Behaviour shared by all stores (see `evoforge.store.base` for the contract)."""

    def test_new_store_has_no_config(self, store: RunStore) -> None:
        assert store.config() is None

    def test_config_round_trip_and_written_once(self, store: RunStore) -> None:
        store.put_config({"seed": 3, "nested": {"a": [1, 2]}})
        assert store.config() == {"seed": 3, "nested": {"a": [1, 2]}}
        with pytest.raises(StoreError):
            store.put_config({"seed": 4})

    def test_returned_config_is_a_copy(self, store: RunStore) -> None:
        store.put_config({"nested": {"a": 1}})
        got = store.config()
        assert got is not None
        got["nested"]["a"] = 99
        assert store.config() == {"nested": {"a": 1}}

    def test_meta_overwrites(self, store: RunStore) -> None:
        assert store.meta("x", "default") == "default"
        store.put_meta("x", [1])
        store.put_meta("x", {"b": 2})
        assert store.meta("x") == {"b": 2}

    def test_genome_stored_once(self, store: RunStore) -> None:
        store.put_genome("k1", '{"a":1}')
        store.put_genome("k1", '{"a":2}')
        assert store.genome("k1") == '{"a":1}'
        with pytest.raises(StoreError):
            store.genome("missing")

    def test_evaluations_in_insertion_order_and_unique(self, store: RunStore) -> None:
        evals = {
            "b": Evaluation(Status.OK, {"f": 1.5}, {"c": -1.0}, duration_s=0.5, metrics={"m": [1, 2]}),
            "a": Evaluation.failure(Status.CRASHED, "worker died"),
            "c": Evaluation.failure(Status.TIMEOUT, "too slow", 3.0),
        }
        for gen, (key, ev) in enumerate(evals.items()):
            store.put_genome(key, "{}")
            store.put_evaluation(key, ev, gen)
        assert list(store.evaluations()) == ["b", "a", "c"]
        assert store.evaluations() == evals
        assert store.evaluation_generations() == {"b": 0, "a": 1, "c": 2}
        with pytest.raises(StoreError):
            store.put_evaluation("b", evals["b"], 5)

    def test_screenings_are_kept_apart_per_fraction(self, store: RunStore) -> None:
        low = Evaluation(Status.OK, {"f": 2.0}, metrics={"fidelity": 0.25})
        for key in ("a", "b"):
            store.put_genome(key, "{}")
        store.put_screening("b", 0.25, low, 0)
        store.put_screening("a", 0.25, Evaluation.failure(Status.FAILED, "diverged"), 0)
        store.put_screening("b", 0.5, low, 0)
        assert store.screenings() == {0.25: {"b": low, "a": Evaluation.failure(Status.FAILED, "diverged")}, 0.5: {"b": low}}
        assert list(store.screenings()[0.25]) == ["b", "a"]
        assert store.evaluations() == {}  # the front never sees a screening
        store.put_evaluation("b", low, 0)  # the same genome at full fidelity
        with pytest.raises(StoreError):
            store.put_screening("b", 0.25, low, 1)

    def test_batches_and_generations(self, store: RunStore) -> None:
        assert store.batch(0) is None
        store.put_batch(0, {"offspring": [{"key": "a"}], "rng_state": {"s": 1}})
        assert store.batch(0) == {"offspring": [{"key": "a"}], "rng_state": {"s": 1}}
        store.put_generation(1, {"generation": 1})
        store.put_generation(0, {"generation": 0})
        assert [g["generation"] for g in store.generations()] == [0, 1]
