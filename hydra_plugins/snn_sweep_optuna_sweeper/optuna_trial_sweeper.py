"""Hydra's Optuna sweeper (hydra-optuna-sweeper 1.3.0) with the gaps a sweep pipeline needs closed.

Selected by `hydra.sweeper._target_` in conf/hparams_search/*.yaml; everything else about the
sweeper (params, sampler, storage, study_name, n_trials, ...) is configured exactly as upstream.

Why a subclass: the trial only exists inside the sweeper (`study.ask()`), so the sweeper is the
one place that can hand each job its trial number without guessing. Looking the job up in the
storage from inside the job would have to match parameters against RUNNING trials, which is
ambiguous (equal parameters, n_jobs > 1, several workers on one PostgreSQL study). The number
travels as `hydra.job.env_set` overrides: Hydra records them in the job's .hydra/hydra.yaml and
every launcher (local, joblib, submitit) applies them to the job, so the job needs no Optuna code.

What it adds to the upstream sweeper:
- each job gets SNN_SWEEP_OPTUNA_{TRIAL,STUDY,STORAGE} (storage without password) and its job
  number is its trial number, so job dir N is trial N even when a study is continued in the
  same sweep dir; each trial gets the user attributes job_dir and job_status;
- a job that returns a non-float or non-finite value is told to Optuna as FAIL (upstream leaves
  such a trial RUNNING and crashes the sweep), and so are the trials of an interrupted batch
  (Ctrl-C);
- a study that is continued with a seeded sampler gets the seed `seed + trials so far`, so it
  draws new parameters instead of replaying the first run's (the seeded random start-up phase
  would otherwise propose the same points again);
- the sqlite file's folder is created; multirun.yaml is written as Hydra's basic sweeper does;
- when no trial of the study has completed, the sweep ends with one clear error instead of the
  traceback `study.best_trial` raises.

It overrides private methods of a pinned version (pyproject: hydra-optuna-sweeper==1.3.0).
Hydra only instantiates sweepers from the hydra_plugins namespace and imports every public module
there at start-up, so, as upstream does, this module is a light facade and the implementation,
which imports Optuna (about 2 s), lives in _impl.py (the scanner skips "_" modules) and is
loaded only when a sweep starts.
"""
from typing import Any

# The module, not the class: Hydra's plugin scan registers every plugin class a module holds.
from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper as upstream


class OptunaTrialSweeper(upstream.OptunaSweeper):
    """Takes the upstream sweeper's arguments; only the implementation behind them differs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # upstream's __init__ only builds this
        from ._impl import TrialSweeperImpl

        self.sweeper = TrialSweeperImpl(*args, **kwargs)
