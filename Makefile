# Every target creates .venv when missing and installs everything through constraints.txt
# (torch pinned to the CPU build 2.13.0; an unpinned torch-ecosystem package would pull CUDA torch).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt
# torchvision, a user's library for the tests and benchmarks, lives apart from the venv's packages: the
# only build pairing with torch 2.13 here is a CUDA one that fails to import, and transformers (which
# imports it when it is installed) would fail with it. tests/support/torchvision_shim puts this
# folder on the path, behind the operator shim that lets that build import.
USER_LIBS := $(VENV)/user-libraries
export TORCHAO_FORCE_SKIP_LOADING_SO_FILES := 1
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install lint test test-fast matrix demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip setuptools wheel
	$(PIP) -e ".[torch,transformers,iree,ray,openvino,dev]"
	$(PY) -m pip uninstall -q -y torchvision 2>/dev/null || true
	$(PIP) --no-deps --upgrade --target $(USER_LIBS) torchvision==0.28.0
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

# pytest exits 5 when it collects no test: that is not a failure of the suite. Two pytest-xdist
# workers, a test file each at a time (module fixtures are built once; the Ray tests stay together).
test: install lint
	$(PY) -m pytest -q -m "not matrix" -n 2 --dist loadfile; rc=$$?; [ $$rc -eq 5 ] && echo "no tests collected" && rc=0; exit $$rc

test-fast: install
	$(PY) -m pytest -q -m "not slow"; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# The conformance matrix over torchvision and transformers architectures (about 30 minutes).
matrix: install
	EVOFORGE_MATRIX_OUT=docs/bench/conformance-matrix.json $(PY) -m pytest -q -m matrix tests/test_conformance.py

demo: install
	$(VENV)/bin/evoforge demo

# Syne Tune (the MOASHA peer) without its dependencies: its scheduler needs none of them, and they
# would pull xgboost and a CUDA NCCL wheel.
bench: install
	$(PIP) --no-deps syne-tune==0.16.0
	for f in benchmarks/[a-z]*.py; do echo "== $$f"; $(PY) $$f || exit $$?; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
