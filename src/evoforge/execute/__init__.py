"""Executors: where evaluations run (in the driver, in local worker processes)."""

from evoforge.execute.base import EvalTask, Executor, run_task
from evoforge.execute.inline import InlineExecutor
from evoforge.execute.local import LocalExecutor, available_cores

__all__ = ["EvalTask", "Executor", "InlineExecutor", "LocalExecutor", "available_cores", "run_task"]
