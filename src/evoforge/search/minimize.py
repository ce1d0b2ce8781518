"""Minimizing a front member: drop the parts of its genome that buy nothing.

A searched member often carries hitchhikers: edits that were inherited or added alongside the
one that made it fast and that change nothing, or cost quality. `Minimization` removes them
greedily, one part at a time, for one member:

1. the member is evaluated again (the *reference*): its stored timing is the fastest of many noisy
   ones the search kept, so candidates are compared with a measurement taken now;
2. each round evaluates the current genome without each part still worth trying;
3. a candidate is *no worse* when it succeeds, is feasible where the member was, and is within
   ``tolerance`` of the reference on every objective (relative, timed objectives only; the others
   must not get worse at all). Comparing with the reference, never with the previous round's
   winner, bounds what the whole minimization may lose by the tolerance;
4. the round's best no-worse candidate (the smallest sum of relative changes) becomes the
   current genome; the next rounds try only the parts whose removal was no worse in this one:
   first all of them at once (one evaluation; when that is no worse, it is the result), and when
   that is worse, one at a time again. It stops when no removal is no worse, or nothing is left
   to try.

The class is ask/tell and knows nothing of executors or stores: `wanted` lists the genomes it
needs evaluated, `tell` takes their evaluations (`evoforge.search.engine.Search.minimize` drives it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evoforge.genome import Genome
from evoforge.pareto import Objective, violation
from evoforge.search.evaluation import Evaluation

MINIMIZED_METRIC = "minimize_of"
"""Metric of an evaluation made while minimizing: the key of the member being minimized."""
MINIMIZED_META = "minimized"
"""The run store's meta key of the minimization records (`Minimization.record`), by member key."""
MINIMIZED_FROM = "minimized_from"
"""The column `show` and the report give such an evaluation: the id of the member it was made from."""
MINIMIZED_TO = "minimized_to"
"""The column `show` and the report give a minimized member, and the variants made on the way, when
its minimization removed something: the id of the shortest variant it ended at."""
DEFAULT_TOLERANCE = 0.02
"""Relative allowance on timed objectives: about what timing one program twice differs by on a quiet machine."""


@dataclasses.dataclass(frozen=True)
class Request:
    """A genome `Minimization` needs evaluated; ``reference`` marks the member's own re-evaluation
    (not stored as a new evaluation: the member is in the run already)."""

    key: str
    genome: Genome
    reference: bool = False


class Minimization:
    """The greedy removal of parts for one member (see the module docstring). ``keep`` builds the
    genome made of the member's parts at the given indices (`Domain.keep_parts`); ``words`` are the
    parts in words (`Domain.parts`); ``timed``: the names of objectives measured with noise."""

    def __init__(self, key: str, genome: Genome, words: Sequence[str], keep: Callable[[Genome, Sequence[int]], Genome],
                 objectives: Sequence[Objective], *, timed: Sequence[str] = (), tolerance: float = DEFAULT_TOLERANCE,
                 feasible: bool = True) -> None:
        self.key = key
        self.genome = genome
        self.words = list(words)
        self._keep = keep
        self.objectives = tuple(objectives)
        self.timed = set(timed)
        self.tolerance = tolerance
        self.feasible = feasible
        self.kept: list[int] = list(range(len(self.words)))
        self.reference: Evaluation | None = None
        self.result: tuple[str, Evaluation] | None = None  # the current genome's key and evaluation, once it has one
        self.rounds = 0
        self.path: list[str] = []  # the keys of the genomes the member was cut to, step by step (the last: the result)
        self._trying: list[int] = list(self.kept)
        self._joint = False  # the next round tries removing every part in `_trying` at once
        self._round: dict[tuple[int, ...], Request] = {}
        self._results: dict[str, Evaluation] = {}
        self.finished = False

    # ------------------------------------------------------------------ ask / tell
    def wanted(self) -> list[Request]:
        """The evaluations needed now (none while waiting for told ones, or once finished)."""
        if self.finished:
            return []
        if self.reference is None:
            return [Request(self.key, self.genome, reference=True)]
        while not self.finished:
            if not self._round:
                self._start_round()
                continue
            pending = [r for r in self._round.values() if r.key not in self._results]
            if pending:
                return pending
            self._end_round()  # a round of genomes evaluated in an earlier round
        return []

    def tell(self, request: Request, evaluation: Evaluation) -> None:
        """Record the evaluation of a request `wanted` returned; a round ends when all of its
        candidates are told."""
        if request.reference:
            self.reference = evaluation
            self.result = (self.key, evaluation)
            if not evaluation.ok:  # the member itself fails now: nothing can be compared with it
                self.finished = True
            return
        self._results[request.key] = evaluation
        if self._round and all(r.key in self._results for r in self._round.values()):
            self._end_round()

    # ------------------------------------------------------------------ rounds
    def _start_round(self) -> None:
        """A joint round (one candidate: the current genome without every part still worth trying)
        when two or more are and the last round was not a joint one that failed; else one candidate
        per part."""
        trying = [i for i in self._trying if i in self.kept]
        if not trying:
            self.finished = True
            return
        self.rounds += 1
        self._joint = self._joint and len(trying) >= 2
        groups = [trying] if self._joint else [[i] for i in trying]
        for group in groups:
            genome = self._keep(self.genome, [j for j in self.kept if j not in group])
            self._round[tuple(group)] = Request(genome.content_hash, genome)

    def _end_round(self) -> None:
        no_worse = [(self._change(self._results[r.key]), group) for group, r in self._round.items()
                    if self.no_worse(self._results[r.key])]
        if self._joint:
            # all at once: done when it is no worse, else one at a time over the same parts
            self._joint = False
            if no_worse:
                self._remove(no_worse[0][1])
                self._trying = []
        elif no_worse:
            _, best = min(no_worse)
            self._remove(best)
            self._trying = [group[0] for _, group in no_worse if group != best]
            self._joint = True
        else:
            self._trying = []
        self._round = {}
        if not self._trying:
            self.finished = True

    def _remove(self, group: tuple[int, ...]) -> None:
        """Make the round's candidate without ``group`` the current genome."""
        chosen = self._round[group]
        self.kept = [i for i in self.kept if i not in group]
        self.result = (chosen.key, self._results[chosen.key])
        self.path.append(chosen.key)

    def no_worse(self, evaluation: Evaluation) -> bool:
        """Succeeded, feasible where the member was, and within the tolerance of the reference."""
        assert self.reference is not None
        if not evaluation.ok or (self.feasible and violation(evaluation.constraints) > 0):
            return False
        for objective in self.objectives:
            value = objective.to_min(evaluation.objectives[objective.name])
            reference = objective.to_min(self.reference.objectives[objective.name])
            allowance = self.tolerance * abs(reference) if objective.name in self.timed else 0.0
            if value > reference + allowance + 1e-12:
                return False
        return True

    def _change(self, evaluation: Evaluation) -> float:
        """The sum over objectives of the relative change against the reference (lower is better)."""
        assert self.reference is not None
        total = 0.0
        for objective in self.objectives:
            value = objective.to_min(evaluation.objectives[objective.name])
            reference = objective.to_min(self.reference.objectives[objective.name])
            total += (value - reference) / max(abs(reference), 1e-9)
        return total

    # ------------------------------------------------------------------ outcome
    def record(self) -> dict[str, Any]:
        """What the minimization found, as stored in the run (`evoforge.api.minimize` returns these):
        the member, the result's key, the parts kept and removed (indices into the member's parts
        and in words), the reference's and the result's objectives, the rounds, the keys of the
        genomes it was cut to step by step (``path``, ending at the result), and whether it
        ``finished`` (False: a budget stopped it first; the result is the best found by then)."""
        removed = [i for i in range(len(self.words)) if i not in self.kept]
        result_key, result = self.result if self.result is not None else (self.key, None)
        return {
            "member": self.key,
            "result": result_key,
            "kept": list(self.kept),
            "removed": removed,
            "removed_words": [self.words[i] for i in removed],
            "reference": dict(self.reference.objectives) if self.reference is not None and self.reference.ok else None,
            "reference_failure": self.reference.reason if self.reference is not None and not self.reference.ok else None,
            "objectives": dict(result.objectives) if result is not None and result.ok else None,
            "rounds": self.rounds,
            "path": list(self.path),
            "finished": self.finished,
        }


def shorter_variants(records: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Key -> the key of the shortest variant it is no worse than, from the stored records
    (`MINIMIZED_META`): each minimized member whose minimization removed something, and the
    genomes on its way there (``path``), to the result."""
    out: dict[str, str] = {}
    for member, r in records.items():
        if r.get("removed") and r.get("result") != member:
            out.update({key: r["result"] for key in [member, *r.get("path", [])[:-1]]})
    return out


def minimize_links(key: str, metrics: Mapping[str, Any], ids: Mapping[str, int], shorter: Mapping[str, str]) -> dict[str, int]:
    """The `MINIMIZED_FROM` and `MINIMIZED_TO` columns of evaluation ``key`` (with its ``metrics``),
    given every evaluation's id and `shorter_variants`; only those that apply."""
    links = {}
    if metrics.get(MINIMIZED_METRIC) in ids:
        links[MINIMIZED_FROM] = ids[metrics[MINIMIZED_METRIC]]
    if shorter.get(key) in ids:
        links[MINIMIZED_TO] = ids[shorter[key]]
    return links
