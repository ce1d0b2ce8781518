"""Fixtures shared by every test package (the torch ones load only when a test uses them).

The torchvision wheel that pairs with torch 2.13 here is a CUDA build that needs two operator
definitions before it imports, installed by the Makefile outside the venv's packages (so that
transformers, which imports an installed torchvision, works in evoforge's own commands);
`tests/support/torchvision_shim` finds it and defines the operators, in this process and (through
PYTHONPATH) in every process the tests start. evoforge itself never does this.
"""

import os
import sys
from pathlib import Path

_SHIM = Path(__file__).parent / "support" / "torchvision_shim"
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_SHIM), os.environ.get("PYTHONPATH", "")) if p)
if str(_SHIM) not in sys.path:
    sys.path.insert(0, str(_SHIM))
    import sitecustomize  # noqa: F401  (this folder's: installs the hook in the test process)

pytest_plugins = ["tests.support.torch_fixtures"]
