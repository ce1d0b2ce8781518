"""Keep what torch's extensions and the ONNX converters print about themselves out of a run's
output; errors still raise."""

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


class _BelowErrorFrom(logging.Filter):
    """Drops records below ERROR whose source file lies under ``package`` (any, when it is empty)."""

    def __init__(self, package: str = "") -> None:
        super().__init__()
        self.package = package

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or self.package not in record.pathname.replace(os.sep, "/")


@contextmanager
def quiet_onnx_converters() -> Iterator[None]:
    """Drop what ONNX Runtime's quantizer, onnxscript's constant folding and torch's ONNX op
    registry log about steps they skip and that change nothing (a LayerNorm weight that has no
    channel axis to quantize along, a shape computation left unfolded, torchvision's operators when
    torchvision is not installed): on a BERT every evaluation printed dozens of such lines, and
    every export without torchvision three. Errors still pass."""
    targets = [(logging.getLogger(), _BelowErrorFrom("onnxruntime/quantization")),  # it logs on the root logger
               (logging.getLogger("onnxscript.optimizer._constant_folding"), _BelowErrorFrom()),
               (logging.getLogger("torch.onnx._internal.exporter._registration"), _BelowErrorFrom())]
    for logger, drop in targets:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger, drop in targets:
            logger.removeFilter(drop)
