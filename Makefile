# Set-up and everyday commands. Everything runs in .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data
ARGS ?=

.PHONY: run test bench clean-venv

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e ".[dev]"
	touch $(STAMP)

# A first result in about a minute on 2 cores: the default SNN on 10k training images.
# MNIST is downloaded into DATA unless it is already there (make run DATA=../shared/data).
run: $(STAMP)
	$(BIN)/python -m snn_sweep data.root=$(DATA) data.train_subset=10000 $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m snn_sweep.bench --data-root $(DATA) $(ARGS)

clean-venv:
	rm -rf $(VENV)
