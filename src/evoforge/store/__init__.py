"""Run stores: where a search records everything it needs to report on or resume a run."""

from evoforge.store.base import SCHEMA_VERSION, RunStore
from evoforge.store.memory import MemoryRunStore
from evoforge.store.sqlite import SQLiteRunStore

__all__ = ["SCHEMA_VERSION", "MemoryRunStore", "RunStore", "SQLiteRunStore"]
