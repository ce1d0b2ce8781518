"""Keep what torch's extensions print about themselves out of a run's output; errors still raise."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_torch_internals() -> Iterator[None]:
    """Silence, while it is open, torchao's attempt to load its CUDA-only kernels (skipped: they
    serve no CPU run), its Enum registration notices, and deprecation notices from torch
    internals and Inductor. transformers imports torchao when it is installed, so importing a
    model class needs this as much as quantizing does."""
    os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree", "torch._inductor", "torch._export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
