# Set-up and everyday commands. Everything runs in .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data
ARGS ?=

.PHONY: run test bench results readme clean-venv

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e ".[dev]"
	touch $(STAMP)

# A first result in under a minute on 2 cores: the default SNN, one epoch on full MNIST
# (~95% test accuracy). MNIST is downloaded into DATA unless it is already there
# (make run DATA=../shared/data).
run: $(STAMP)
	$(BIN)/python -m snn_sweep data.root=$(DATA) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

# The README's Performance tables (docs/bench/): ~4 min on 2 cores, best on an idle machine.
bench: $(STAMP)
	$(BIN)/python -m snn_sweep.bench --data-root $(DATA) --accuracy --out docs/bench/bench.csv $(ARGS)
	$(BIN)/python scripts/include.py README.md

# The README's result tables and plots (docs/results/), each from a fresh sweep on full MNIST
# and the aggregator; ~7 min on 2 cores. Job dirs go to multirun/results/ (not committed).
RUN := $(BIN)/python -m snn_sweep data.root=$(DATA) trainer.progress=false
AGG := $(BIN)/python -m snn_sweep.aggregate
SWEEPS := multirun/results
results: $(STAMP)
	rm -rf $(SWEEPS)
	$(RUN) -m experiment=snn_vs_ann hydra.sweep.dir=$(SWEEPS)/snn_vs_ann
	$(AGG) $(SWEEPS)/snn_vs_ann --out docs/results/snn_vs_ann
	$(RUN) -m experiment=timesteps hydra.sweep.dir=$(SWEEPS)/timesteps
	$(AGG) $(SWEEPS)/timesteps --out docs/results/timesteps
	$(RUN) model=snn encoder=rate -m timesteps=1,10,25 data.train_subset=10000 \
	    hydra.sweep.dir=$(SWEEPS)/card
	$(AGG) $(SWEEPS)/card --out docs/results/card
	for i in 1 2; do $(RUN) -m hparams_search=snn_optuna data.train_subset=5000 \
	    hydra.sweeper.n_trials=4 hydra.sweeper.storage=sqlite:///$(SWEEPS)/optuna.db \
	    hydra.sweep.dir=$(SWEEPS)/optuna/run$$i || exit 1; done
	$(AGG) $(SWEEPS)/optuna --out docs/results/optuna --study sqlite:///$(SWEEPS)/optuna.db
	$(BIN)/python scripts/include.py README.md

readme:
	$(BIN)/python scripts/include.py README.md

clean-venv:
	rm -rf $(VENV)
