"""The text summary `show` prints: held-out numbers next to the baseline's."""

from __future__ import annotations

import evoforge
from evoforge.api import open_store
from evoforge.report.text import run_summary
from evoforge.testing.domains import PartsDomain


def test_held_out_differences_to_the_baseline_carry_no_rounding_residue(tmp_path) -> None:
    run_dir = tmp_path / "run"
    evoforge.optimize(PartsDomain(members=(("fast-1",),)), run_dir=run_dir, budget=2, pop_size=2)
    with open_store(run_dir) as store:
        final = store.meta("final")
        keys = [key for key in final if key != "baseline"]
        final["baseline"] = {"f1": 0.9962950257289881}
        final[keys[0]] = {"f1": 0.996295025728988}  # the same score, averaged in another order
        store.put_meta("final", final)
    rows = {row["key"]: row for row in run_summary(run_dir)["front"]}
    assert rows[keys[0]]["Δtest_f1"] == 0.0
