"""Test and benchmark fixture, not part of evoforge: lets the CUDA build of torchvision 0.28
(the only one that pairs with torch 2.13 on these machines) import beside the CPU torch.

Put this folder on PYTHONPATH: every Python process, spawned workers included, then finds
torchvision in ``<venv>/user-libraries`` (where the Makefile installs it, apart from the venv's
packages, so that evoforge's own commands run without it) and defines torchvision's two custom
operators just before the first ``import torchvision``, which is what its import needs when its
compiled ops cannot load. Nothing is imported at start-up.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

USER_LIBRARIES = Path(sys.prefix) / "user-libraries"
_LIBRARIES: list[object] = []  # keeps the operator library alive for the life of the process


def define_torchvision_operators() -> None:
    """Define ``torchvision::nms`` and ``torchvision::qnms`` unless torchvision's own ops loaded."""
    import torch

    if hasattr(torch.ops.torchvision, "nms") or _LIBRARIES:
        return
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARIES.append(library)


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201
        if name == "torchvision":
            sys.meta_path.remove(self)
            add_user_libraries()  # again: pytest-xdist replaces a worker's sys.path after start-up
            define_torchvision_operators()
            return importlib.machinery.PathFinder.find_spec(name, path)
        return None


def add_user_libraries() -> None:
    """Put `USER_LIBRARIES` on the path, after the venv's packages (it adds torchvision, nothing else)."""
    if USER_LIBRARIES.is_dir() and str(USER_LIBRARIES) not in sys.path:
        sys.path.append(str(USER_LIBRARIES))


add_user_libraries()
sys.meta_path.insert(0, _BeforeTorchvision())
