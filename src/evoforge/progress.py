"""Progress reporting for searches: a live line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from evoforge.search.engine import Candidate, GenerationSummary, SearchCallback
from evoforge.search.evaluation import Evaluation, Status
from evoforge.search.termination import Termination


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


class ProgressPrinter(SearchCallback):
    """Prints a status line per generation (generation, evaluations, failures by kind,
    hypervolume, best per objective, ETA); on a terminal also refreshes it per evaluation."""

    def __init__(self, termination: Termination, *, workers: int = 1, stream: TextIO | None = None) -> None:
        self.termination = termination
        self.workers = max(1, workers)
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._started = time.monotonic()
        self._evaluations = 0
        self._failures: dict[str, int] = {}
        self._last: GenerationSummary | None = None

    def eta_s(self, evaluations: int, elapsed_s: float, mean_eval_s: float) -> float | None:
        """Seconds left under the tightest budget, from measured evaluation costs."""
        options = []
        if self.termination.max_seconds is not None:
            options.append(self.termination.max_seconds - elapsed_s)
        if self.termination.max_evaluations is not None and evaluations:
            per_eval = elapsed_s / evaluations if elapsed_s > 0 else mean_eval_s / self.workers
            options.append((self.termination.max_evaluations - evaluations) * per_eval)
        return min(options) if options else None

    def on_evaluation(self, candidate: Candidate, evaluation: Evaluation) -> None:
        self._evaluations += 1
        if evaluation.status is not Status.OK:
            self._failures[evaluation.status.value] = self._failures.get(evaluation.status.value, 0) + 1
        if self.live:
            gen = candidate.generation
            self.stream.write(f"\r  gen {gen} | {self._evaluations} evaluated this session | {self._fail_text(self._failures)}\033[K")
            self.stream.flush()

    def on_generation(self, summary: GenerationSummary) -> None:
        self._last = summary
        best = " ".join(f"{k}={v:.4g}" for k, v in summary.best.items()) or "-"
        eta = format_eta(self.eta_s(summary.evaluations, summary.elapsed_s, summary.mean_evaluation_s))
        line = (
            f"gen {summary.generation:>3} | evals {summary.evaluations:>5} | {self._fail_text(summary.failures)} | "
            f"HV {summary.hypervolume:.4g} | best {best} | {summary.elapsed_s:.0f}s | ETA {eta}"
        )
        self.stream.write(("\r" if self.live else "") + line + ("\033[K\n" if self.live else "\n"))
        self.stream.flush()

    @staticmethod
    def _fail_text(failures: dict[str, int]) -> str:
        if not failures:
            return "failures 0"
        return "failures " + ", ".join(f"{k} {v}" for k, v in sorted(failures.items()))
