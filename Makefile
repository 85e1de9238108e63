# Set-up and everyday commands. Everything runs in .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data
ARGS ?=

.PHONY: run test bench gpu-check results tuning tune-recipes comparison augment-budget neurobench \
	lock readme \
	clean-venv

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

# Both tiers, on every core (pytest-xdist): the fast tier (`pytest` alone, in-process tests)
# and the slow one (subprocess sweeps, PostgreSQL, the wheel, the notebook, the package index).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow" $(ARGS)

# docs/performance.md's tables (docs/bench/), with the peers of the bench extra (in the lock):
# ~25 min on 2 cores (the conv cases' tutorial and peer loops dominate), best on an idle machine.
BENCH_CASES := rate1,rate25,direct25,latency25,delta25,single_step,ann,csnn_rate25,csnn_direct8,csnn_latency25,csnn_delta25
bench: $(STAMP)
	$(BIN)/python -m bench --data-root $(DATA) --accuracy --cases $(BENCH_CASES) \
	    --out docs/bench/bench.csv $(ARGS)
	$(BIN)/python -m bench --data-root $(DATA) --no-memory \
	    --cases rate25_dropout,rate25_affine,csnn_bn_direct8,csnn_bn_direct8_bf16 \
	    --out docs/bench/recipes.csv $(ARGS)
	$(BIN)/python -m bench --data-root $(DATA) --no-memory --no-peers --cases nmnist_csnn10 \
	    --out docs/bench/events.csv $(ARGS)
	$(BIN)/python scripts/include.py README.md docs/*.md

# On a machine with an NVIDIA GPU (about 8 min on an H100, set-up aside): the CUDA tests, one
# epoch of the default SNN and of recipe=csnn_bn on the GPU and the CPU, and the bench on the GPU
# into docs/bench/gpu.md (scripts/gpu_check.sh; it installs .venv itself if it is missing).
gpu-check:
	bash scripts/gpu_check.sh $(DATA)

# The README's result tables and plots (docs/results/), each from a fresh sweep on full MNIST
# and the aggregator: ~7 min on 2 cores, then the comparison's three steps: the recipe
# studies, the augmentation stage and the 3-seed runs (below; their wall times are in
# docs/results.md). Job dirs go to multirun/results/ (not committed).
RUN := $(BIN)/python -m snn_sweep data.root=$(DATA) trainer.progress=false
AGG := $(BIN)/python -m snn_sweep.aggregate
SWEEPS := multirun/results
results: $(STAMP)
	rm -rf $(SWEEPS)/snn_vs_ann $(SWEEPS)/timesteps $(SWEEPS)/card $(SWEEPS)/optuna $(SWEEPS)/optuna.db
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
	$(MAKE) tune-recipes augment-budget comparison DATA=$(DATA) RESUME=$(RESUME)

# The README's tuning figures (docs/results/pruning/, docs/results/pareto/), on full MNIST:
# two 20-trial studies of snn_optuna_pruned's 5-epoch trials, one with its median pruner and one
# without, same sampler seed, run side by side on one thread each (one study file each), then a
# 20-trial accuracy-energy study (snn_pareto). Delta coding is left out of the search space
# here: its trials take minutes each on 2 cores. ~45 min.
SPACE := 'encoder=choice(rate,latency,direct)' 'timesteps=int(interval(5,25))'
PRUNING := $(RUN) -m hparams_search=snn_optuna_pruned $(SPACE) trainer.threads=1
tuning: $(STAMP)
	rm -rf $(SWEEPS)/pruning $(SWEEPS)/pareto
	mkdir -p $(SWEEPS)/pruning
	$(PRUNING) hydra.sweeper.storage=sqlite:///$(SWEEPS)/pruning/pruned.db \
	    hydra.sweep.dir=$(SWEEPS)/pruning/pruned > $(SWEEPS)/pruning/pruned.log 2>&1 & \
	$(PRUNING) '~hydra/sweeper/pruner' hydra.sweeper.study_name=snn_optuna_unpruned \
	    hydra.sweeper.storage=sqlite:///$(SWEEPS)/pruning/unpruned.db \
	    hydra.sweep.dir=$(SWEEPS)/pruning/unpruned > $(SWEEPS)/pruning/unpruned.log 2>&1; \
	wait $$! || exit 1
	$(AGG) $(SWEEPS)/pruning --out docs/results/pruning \
	    --study sqlite:///$(SWEEPS)/pruning/pruned.db --study sqlite:///$(SWEEPS)/pruning/unpruned.db
	$(RUN) -m hparams_search=snn_pareto $(SPACE) hydra.sweeper.storage=sqlite:///$(SWEEPS)/pareto.db \
	    hydra.sweep.dir=$(SWEEPS)/pareto
	$(AGG) $(SWEEPS)/pareto --out docs/results/pareto --study sqlite:///$(SWEEPS)/pareto.db
	$(BIN)/python scripts/include.py README.md docs/*.md

# The long targets below (tune-recipes, augment-budget, comparison; hours on 2 cores) start
# from an empty sweep dir. RESUME=1 continues a killed one in its sweep dir instead: each
# run from its last finished epoch (trainer.resume=true), each study with the trials it lacks
# (the recipe studies' max_trials); its wall time then sums its segments (scripts/wall_time.py).
RESUME ?=
# $(call begin,SWEEP_DIR): the target's sweep dir and its wall-time record, new or continued.
begin = $(if $(RESUME),$(BIN)/python scripts/wall_time.py --resume $(1),\
  rm -rf $(1) $(1).start && mkdir -p $(1) && $(BIN)/python scripts/wall_time.py --start $(1))
CONTINUE := $(if $(RESUME),trainer.resume=true)

# Each model's recipe studies (snn_sweep/conf/hparams_search/recipe.yaml) on full MNIST's
# training split, the same budget and search space for every model, plus the recipe's own
# (hparams_search/recipe_space/RECIPE.yaml: the spiking MLPs also search their timesteps, the
# conv SNNs their timesteps, and csnn its encoder). Each model is tuned twice, with sampler
# seeds 0 and 1: 16 studies, two at a time on one thread each (one study file each). docs/results/recipes/ gets every study's trials and studies.md their
# best trials; scripts/recipes.py writes the better of each model's two into
# snn_sweep/conf/recipe/; scripts/wall_time.py the target's wall time (docs/results/wall_time.md).
RECIPES := ann snn_rate snn_direct snn_single_step cnn csnn cnn_bn csnn_bn
SAMPLER_SEEDS := 0 1
TUNE := $(RUN) -m hparams_search=recipe trainer.threads=1
reverse = $(if $(1),$(call reverse,$(wordlist 2,$(words $(1)),$(1))) $(firstword $(1)))
# One study, recipe $1 and sampler seed $2 (sh -c's arguments); xargs keeps two running, the
# conv nets' (the longest, last in RECIPES) first, so that the two cores end together.
STUDY := r=$$1; s=$$2; \
  $(TUNE) recipe=$$r hparams_search/recipe_space=$$r \
    hydra.sweeper.study_name=recipe_$${r}_seed$$s hydra.sweeper.sampler.seed=$$s \
    hydra.sweeper.storage=sqlite:///$(SWEEPS)/recipes/$${r}_seed$$s.db \
    hydra.sweep.dir=$(SWEEPS)/recipes/$$r/seed$$s >> $(SWEEPS)/recipes/$${r}_seed$$s.log 2>&1

tune-recipes: $(STAMP)
	$(call begin,$(SWEEPS)/recipes)
	for r in $(call reverse,$(RECIPES)); do for s in $(SAMPLER_SEEDS); do echo $$r $$s; done; done | \
	  xargs -P 2 -n 2 sh -c '$(STUDY)' study || exit 1
	$(AGG) $(SWEEPS)/recipes --out docs/results/recipes \
	  $(foreach r,$(RECIPES),$(foreach s,$(SAMPLER_SEEDS),--study sqlite:///$(SWEEPS)/recipes/$(r)_seed$(s).db))
	$(BIN)/python scripts/recipes.py $(SWEEPS)/recipes
	$(BIN)/python scripts/wall_time.py tune-recipes $(SWEEPS)/recipes

# The README's main comparison (experiment=comparison: every recipe, 3 seeds, two jobs at a time)
# with the targets it is measured against (docs/results/comparison/targets.md) and its wall time
# (docs/results/wall_time.md). The augmentation stage's runs of the option it chose are the
# same configs as the comparison's seed 0: trainer.reuse copies them instead of training again.
comparison: $(STAMP)
	$(call begin,$(SWEEPS)/comparison)
	$(RUN) -m experiment=comparison hydra.sweep.dir=$(SWEEPS)/comparison $(CONTINUE) \
	    'trainer.reuse=[$(wildcard $(SWEEPS)/augment_budget)]'
	$(AGG) $(SWEEPS)/comparison --out docs/results/comparison
	$(BIN)/python scripts/targets.py docs/results/comparison
	$(BIN)/python scripts/wall_time.py comparison $(SWEEPS)/comparison
	$(BIN)/python scripts/include.py README.md docs/*.md

# NeuroBench's metrics of the comparison's recipes (docs/results.md#neurobench-metrics): each
# recipe at its full budget with seed 0, two jobs at a time (~75 min on 2 cores), its summary,
# and our counts beside NeuroBench's own Benchmark on the checkpoints (scripts/neurobench_check.py).
neurobench: $(STAMP)
	rm -rf $(SWEEPS)/neurobench
	$(RUN) -m experiment=comparison seed=0 hydra.sweep.dir=$(SWEEPS)/neurobench
	$(AGG) $(SWEEPS)/neurobench --out docs/results/neurobench
	$(BIN)/python scripts/neurobench_check.py $(SWEEPS)/neurobench --data-root $(DATA) \
	    --images 1000 --write docs/results/neurobench/agreement.md
	$(BIN)/python scripts/include.py README.md docs/*.md

# The tuning's second stage (experiment=augment_budget, seed 0, two jobs at a time): the
# recipes but the tutorial-6 nets', each at its own budget, with each augmentation option; the
# best validation accuracy's option goes into each recipe (scripts/recipes.py --augment), which
# the comparison then trains (docs/results/augment_budget; its test column chooses nothing).
augment-budget: $(STAMP)
	$(call begin,$(SWEEPS)/augment_budget)
	$(RUN) -m experiment=augment_budget hydra.sweep.dir=$(SWEEPS)/augment_budget $(CONTINUE)
	$(AGG) $(SWEEPS)/augment_budget --out docs/results/augment_budget --metric val_acc \
	    --lines recipe,augment
	$(BIN)/python scripts/recipes.py --augment docs/results/augment_budget/results.csv
	$(BIN)/python scripts/wall_time.py augment-budget $(SWEEPS)/augment_budget
	$(BIN)/python scripts/include.py README.md docs/*.md

# requirements.txt from the venv the suite passed in: its exact versions (pip freeze) resolved
# by uv for every platform at once, so what only one platform needs (torch's CUDA wheels on
# Linux, colorama on Windows) carries its marker and the same file installs on Linux, macOS
# and Windows (tests/test_lock.py checks the three).
lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable > $(VENV)/freeze.txt
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
	    -c $(VENV)/freeze.txt --no-annotate --custom-compile-command "make lock" \
	    -o requirements.txt

readme:
	$(BIN)/python scripts/include.py README.md docs/*.md

clean-venv:
	rm -rf $(VENV)
