"""Progress reporting for searches: a live line on a terminal, plain lines otherwise."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from evoforge.errors import ConfigError
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
        self._screenings = 0
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
        if candidate.fidelity < 1.0:
            self._screenings += 1
        else:
            self._evaluations += 1
            if evaluation.status is not Status.OK:
                self._failures[evaluation.status.value] = self._failures.get(evaluation.status.value, 0) + 1
        if self.live:
            screened = f" ({self._screenings} screened)" if self._screenings else ""
            self.stream.write(f"\r  gen {candidate.generation} | {self._evaluations} evaluated{screened} this session | "
                              f"{self._fail_text(self._failures)}\033[K")
            self.stream.flush()

    def on_generation(self, summary: GenerationSummary) -> None:
        self._last = summary
        best = " ".join(f"{k}={v:.4g}" for k, v in summary.best.items()) or "-"
        eta = format_eta(self.eta_s(summary.evaluations, summary.elapsed_s, summary.mean_evaluation_s))
        patience = self.termination.stagnation_generations
        plateau = f" | plateau {min(summary.plateau, patience)}/{patience}" if patience is not None else ""
        line = (
            f"gen {summary.generation:>3} | evals {summary.evaluations:>5} | {self._fail_text(summary.failures)} | "
            f"HV {summary.archive_hypervolume:.4g} (population {summary.hypervolume:.4g}){plateau} | best {best} | "
            f"{summary.elapsed_s:.0f}s | ETA {eta}"
        )
        self._print_line(line)

    def on_finalize(self, members: int) -> None:
        plural = "" if members == 1 else "s"
        self._print_line(f"measuring the {members} front member{plural} again (held-out data, timing)")

    def _print_line(self, line: str) -> None:
        """``line`` as a line of its own (over the live line on a terminal)."""
        self.stream.write(("\r" if self.live else "") + line + ("\033[K\n" if self.live else "\n"))
        self.stream.flush()

    @staticmethod
    def _fail_text(failures: dict[str, int]) -> str:
        if not failures:
            return "failures 0"
        return "failures " + ", ".join(f"{k} {v}" for k, v in sorted(failures.items()))


class MinimizeProgress(SearchCallback):
    """Counts `evoforge minimize`'s evaluations: a live line on a terminal, else a line every
    ``every`` evaluations; then a line when the new front members are measured again."""

    def __init__(self, *, every: int = 10, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.every = every
        self._evaluated = 0
        self._failed = 0

    def on_evaluation(self, candidate: Candidate, evaluation: Evaluation) -> None:
        self._evaluated += 1
        self._failed += evaluation.status is not Status.OK
        line = f"minimize: {self._evaluated} shorter variants evaluated ({self._failed} failed)"
        if self.live:
            self.stream.write(f"\r{line}\033[K")
        elif self._evaluated % self.every == 0:
            self.stream.write(line + "\n")
        self.stream.flush()

    def on_finalize(self, members: int) -> None:
        plural = "" if members == 1 else "s"
        self.stream.write(("\r" if self.live else "") + f"minimize: measuring the {members} new front member{plural} again "
                          f"(held-out data, timing)" + ("\033[K\n" if self.live else "\n"))
        self.stream.flush()


class JsonEventLog(SearchCallback):
    """Appends one JSON object per line to ``path``: an ``evaluation`` event per evaluation, a
    ``generation`` event per generation and a ``finalize`` event when the front members are
    measured again (``time`` is seconds since the epoch)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot append events to {self.path}: {exc.strerror or exc}; give a file path you can "
                              "write to") from None

    def _write(self, event: dict[str, Any]) -> None:
        self._file.write(json.dumps({"time": round(time.time(), 3), **event}, default=str) + "\n")
        self._file.flush()

    def on_evaluation(self, candidate: Candidate, evaluation: Evaluation) -> None:
        self._write({
            "event": "evaluation", "generation": candidate.generation, "key": candidate.key,
            "operator": candidate.operator, "parent": candidate.parent, "status": evaluation.status.value,
            "objectives": evaluation.objectives, "constraints": evaluation.constraints,
            "reason": evaluation.reason, "duration_s": round(evaluation.duration_s, 4),
        })

    def on_generation(self, summary: GenerationSummary) -> None:
        self._write({"event": "generation", **{k: v for k, v in summary.__dict__.items() if k != "population"}})

    def on_finalize(self, members: int) -> None:
        self._write({"event": "finalize", "members": members})

    def close(self) -> None:
        self._file.close()


class Callbacks(SearchCallback):
    """Several callbacks as one, called in order."""

    def __init__(self, *callbacks: SearchCallback | None) -> None:
        self.callbacks = [c for c in callbacks if c is not None]

    def on_evaluation(self, candidate: Candidate, evaluation: Evaluation) -> None:
        for c in self.callbacks:
            c.on_evaluation(candidate, evaluation)

    def on_generation(self, summary: GenerationSummary) -> None:
        for c in self.callbacks:
            c.on_generation(summary)

    def on_finalize(self, members: int) -> None:
        for c in self.callbacks:
            c.on_finalize(members)
