# Two entry points (see README): `make demo` runs the main job on the embedded data,
# `make test` runs the test suite. Both create/refresh the local virtualenv first.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# one BLAS thread per process: DataLoader workers decode in their own processes, and more
# threads than cores made CPU steps ~10x slower on a loaded 2-core machine (measured in the demo)
export OMP_NUM_THREADS ?= 1

.PHONY: setup demo test bench clean-data

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@bash tools/install_system_deps.sh || echo "[setup] optional system packages not installed (see message above); continuing"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python tools/demo.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/collect.py
