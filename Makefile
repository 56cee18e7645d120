# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_ARGS ?=

.PHONY: run test install reproduce reference clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is installed first and pinned: an unpinned torch pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The main job: llaca on the embedded synthetic sequence (configs/default.yaml), from scratch each time.
run: $(STAMP)
	rm -rf results/default
	$(BIN)/cvqa run --config configs/default.yaml --out results/default $(RUN_ARGS)

# Two test processes (pytest-xdist; a module's tests stay in one process, so its fixtures are built
# once) with one torch thread each: the tiny model gains nothing from a second thread, and two
# single-threaded processes use both cores of a 2-core machine.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadscope

clean:
	rm -rf $(VENV) results/default

# The "Does LLaCA forget less?" experiment: 4 methods x 3 seeds on the embedded sequence (about 30 min on 2 cores).
reproduce: $(STAMP)
	$(BIN)/cvqa experiment configs/reproduce.yaml

# Deliberately refresh the committed reference results that CI compares against (tests/test_regression.py).
reference: $(STAMP)
	rm -rf results/regression results/reproduce
	OMP_NUM_THREADS=1 $(BIN)/cvqa experiment configs/regression.yaml --reference results/reference/regression  # as CI runs it
	$(BIN)/cvqa experiment configs/reproduce.yaml --reference results/reference/reproduce
