"""Evaluate in the driver process: no isolation, no parallelism, no start-up cost."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from evoforge.errors import ConfigError
from evoforge.execute.base import EvalTask, Executor, run_task
from evoforge.search.domain import Domain, domain_from_spec
from evoforge.search.evaluation import Evaluation


class InlineExecutor(Executor):
    """For cheap, trusted evaluations (benchmark problems, tests). A crash or hang in an
    evaluation takes the driver with it; use `LocalExecutor` for real models."""

    def __init__(self) -> None:
        self._domain: Domain | None = None

    def start(self, domain_spec: dict[str, Any]) -> None:
        self._domain = domain_from_spec(domain_spec)
        self._domain.setup_worker()

    def evaluate(
        self, tasks: Sequence[EvalTask], stop: Callable[[], bool] | None = None, wanted: Callable[[], Sequence[EvalTask]] | None = None
    ) -> Iterator[tuple[EvalTask, Evaluation]]:
        if self._domain is None:
            raise ConfigError("InlineExecutor.evaluate called before start")
        queue = collections.deque(tasks)
        while queue:
            if stop is not None and stop():
                return
            task = queue.popleft()
            yield task, run_task(self._domain, task, threads=1)
            if wanted is not None:
                queue = collections.deque(wanted())
