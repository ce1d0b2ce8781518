"""The report's data: progress rows of a run that a time budget stopped inside a generation."""

from __future__ import annotations

import numpy as np

from evoforge.pareto import Objective
from evoforge.report.data import progress
from evoforge.search.evaluation import Evaluation, Status

OBJECTIVES = (Objective("f1", reference=2.0), Objective("f2", reference=2.0))


def _evaluations(n: int) -> dict[str, Evaluation]:
    return {f"k{i}": Evaluation(Status.OK, {"f1": 1.0 - i / n, "f2": i / n}) if i != 3 else Evaluation(Status.FAILED, {}, reason="x")
            for i in range(n)}


def test_a_generation_cut_by_the_budget_gets_a_last_partial_row():
    evaluations = _evaluations(14)
    generation_of = dict.fromkeys(evaluations, 0)
    finished = {"reason": "time budget reached", "generations": 0, "elapsed_s": 1476.0, "stopped_in_generation": 0}
    rows = progress(evaluations, [], generation_of, OBJECTIVES, np.array([2.0, 2.0]), finished)["generations"]
    assert rows[0]["generation"] is None and len(rows) == 2
    last = rows[1]
    assert last["partial"] is True and last["generation"] == 0 and last["evaluations"] == 14 and last["elapsed_s"] == 1476.0
    assert last["failures"] == 1 and last["hypervolume"] > 0


def test_a_run_that_ended_with_its_generation_has_no_partial_row():
    evaluations = _evaluations(10)
    generations = [{"generation": 0, "evaluations": 10, "elapsed_s": 5.0}]
    for finished in (None, {"reason": "evaluation budget reached (10)", "generations": 1, "elapsed_s": 5.0}):
        rows = progress(evaluations, generations, dict.fromkeys(evaluations, 0), OBJECTIVES, None, finished)["generations"]
        assert [r["generation"] for r in rows] == [None, 0] and not any(r.get("partial") for r in rows)
