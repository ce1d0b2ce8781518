"""What the GEVO-ML benchmarks read from a finished evolve run's summary (`evoforge.report.run_summary`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PAPER_ROOT = Path("runs/evolve-paper")
"""Where `evolve_paper.py` keeps its runs by default."""
MAX_DROP_PT = 2.0
"""The paper's quality budget: a member counts when its test accuracy is at most this many points
below the baseline's."""


def test_drop_pt(summary: dict[str, Any], row: dict[str, Any]) -> float | None:
    """How many points of test accuracy front ``row`` lost against the baseline (None: not scored)."""
    accuracy = row.get("test_accuracy")
    return None if accuracy is None else 100 * (summary["final"]["baseline"]["accuracy"] - accuracy)


def best_within(summary: dict[str, Any], max_drop_pt: float = MAX_DROP_PT) -> dict[str, Any] | None:
    """The front row with the lowest search runtime ratio among those within ``max_drop_pt``."""
    within = [row for row in summary["front"] if (drop := test_drop_pt(summary, row)) is not None and drop <= max_drop_pt]
    return min(within, key=lambda row: row["runtime_ratio"], default=None)


def speedup_cells(search_ratio: float, retimed_ratio: float, drop_pt: float) -> str:
    """Table cells: the search's speedup, the re-timed speedup and the test drop."""
    return f"{1 / search_ratio:.2f}x | {1 / retimed_ratio:.2f}x | {drop_pt:+.2f}"


def runs_or_paper_runs(runs: Sequence[Path], finished: Callable[[Path], bool]) -> list[Path]:
    """``runs``, or else the ``finished`` main and ablation runs of `evolve_paper.py` under `PAPER_ROOT`
    (empty when there are none: the caller says so and ends, as `make bench` runs every script bare)."""
    if runs:
        return list(runs)
    return sorted(p for p in PAPER_ROOT.glob("*") if p.name.startswith(("all-", "ablation-")) and finished(p))
