# The two commands of the README. Both create .venv when it is missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache

.PHONY: demo test fuzz bench bench-torch reproduce-mnist clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,mpi]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/pylgn train --overwrite

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

# The property suite's long profile (tests/test_properties.py): >= 10,000 generated cases
fuzz: $(VENV)/.installed-test
	PYLGN_FUZZ=1 $(BIN)/python -m pytest -q tests/test_properties.py --hypothesis-show-statistics

bench: $(VENV)/.installed
	$(BIN)/python bench/train_step.py

# Full MNIST beside the published rows (tens of minutes; resumable: run it again to continue)
MNIST_SOURCE ?= ../shared/data/mnist
data/mnist.h5: | $(VENV)/.installed
	$(BIN)/python data_scripts/prepare_mnist.py --source $(MNIST_SOURCE) --out data

reproduce-mnist: $(VENV)/.installed-test data/mnist.h5
	$(BIN)/python bench/mnist.py reproduce

# pylgn vs an independent PyTorch implementation; torch lives only in its own venv
.venv-torch/.installed: setup.cfg pyproject.toml
	$(PY) -m venv .venv-torch
	.venv-torch/bin/pip install -q --upgrade pip
	.venv-torch/bin/pip install -q torch==2.13.0 -e .
	touch $@

bench-torch: .venv-torch/.installed
	.venv-torch/bin/python bench/compare_torch.py

clean:
	rm -rf $(VENV) .venv-torch .numba_cache build *.egg-info
