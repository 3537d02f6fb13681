# Two entry points (see README): `make demo` runs the main job on the embedded data,
# `make test` runs the test suite. Both create/refresh the local virtualenv first.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# the demo's pretraining and fine-tuning cut clips from RAM in the main process (no decode workers), so
# two BLAS threads use the two cores; on a loaded machine set OMP_NUM_THREADS=1 (README). The test
# suite runs two xdist workers, one thread each.
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test bench clean-data

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .   # the package + its console commands (avssl-demo, ...)
	@bash tools/install_system_deps.sh || echo "[setup] optional system packages not installed (see message above); continuing"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/avssl-demo $(ARGS)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup -q $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/collect.py
