"""Exception hierarchy: every error evoforge raises on purpose derives from `EvoforgeError`.

Subclasses also inherit the matching builtin so callers can catch either. Messages name the bad
value and the fix; the CLI prints them as one line and exits with code 2.
"""

from __future__ import annotations


class EvoforgeError(Exception):
    """Base of all deliberate evoforge errors."""


class ConfigError(EvoforgeError, ValueError):
    """A user-supplied value (config key, name, option, file) is invalid."""


class UnknownNameError(ConfigError, KeyError):
    """A name looked up in a registry does not exist; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class StoreError(EvoforgeError, RuntimeError):
    """The run store is missing, locked, from an incompatible schema, or inconsistent."""


class EvaluationError(EvoforgeError, RuntimeError):
    """An evaluation could not be carried out; recorded as a FAILED result, never fatal to a run."""


class PruningWarning(UserWarning):
    """A prune stage left layers unpruned that the user may expect pruned; the probe records the
    message in the baseline's ``refused`` under ``prune:layers``, workers do not repeat it."""
