"""Hydra's Optuna sweeper (hydra-optuna-sweeper 1.4) with what a sweep pipeline needs added.

Selected by `override /hydra/sweeper: optuna_trials` in snn_sweep/conf/hparams_search/*.yaml; the
sampler, storage, study_name, n_trials, params, ... are configured exactly as upstream, plus
`pruner`.

Why a subclass: the trial only exists inside the sweeper (`study.ask()`), so the sweeper is the
one place that can hand each job its trial number without guessing. The number travels as
`hydra.job.env_set` overrides: Hydra records them in the job's .hydra/hydra.yaml and every
launcher (local, joblib, submitit) applies them to the job. A job that knows its trial reports
its per-epoch validation metric to it through the storage and asks the pruner
(snn_sweep/optuna_trial.py); a pruned job raises optuna.TrialPruned, which upstream's loop would
record as FAIL, so this sweeper runs its own ask/launch/tell loop (_impl.py). It adds:
- `pruner` (snn_sweep/conf/hydra/sweeper/pruner/: median, hyperband, wilcoxon; none by default):
  the jobs instantiate it; a pruned job's trial is told PRUNED and the sweep goes on;
- two directions: the jobs return (optimized_metric, pareto_metric), the study is given those
  metric names, and optimization_results.yaml lists the Pareto front (as upstream);
- each job gets SNN_SWEEP_OPTUNA_{TRIAL,STUDY,STORAGE} (storage without password) and its job
  number is its trial number, so job dir N is trial N even when a study is continued in the
  same sweep dir; each trial gets the user attributes job_dir and job_status;
- a return that is not a finite number (or pair) is told FAIL, and so are the trials of an
  interrupted batch (Ctrl-C), so no trial stays RUNNING;
- a study that is continued with a seeded sampler gets the seed `seed + trials so far`, so it
  draws new parameters instead of replaying the first run's;
- the sqlite file's folder is created; multirun.yaml is written as Hydra's basic sweeper does;
- a direction that does not fit the metric, or a pruner without a storage or with two
  directions, is refused before any job runs; a sweep in which no trial completed ends with
  one clear line.

Hydra imports this module to find the plugin (entry point in pyproject.toml), so it stays light:
the implementation, which imports Optuna (about 2 s), lives in _impl.py.
"""
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
# The module, not the class: Hydra's plugin scan registers every plugin class a module holds.
from hydra_plugins.hydra_optuna_sweeper import config as upstream_config
from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper as upstream


@dataclass
class OptunaTrialSweeperConf(upstream_config.OptunaSweeperConf):
    _target_: str = (
        "hydra_plugins.snn_sweep_optuna_sweeper.optuna_trial_sweeper.OptunaTrialSweeper")
    # _self_ first: the pruner option chosen in the group must override `pruner: null` below.
    defaults: List[Any] = field(
        default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": None}])
    # An optuna.pruners.* config with _target_ (snn_sweep/conf/hydra/sweeper/pruner/); null: none.
    pruner: Any = None
    # While a job runs its sweeper records a heartbeat for its trial every heartbeat_interval
    # seconds; a RUNNING trial not heard of for grace_period (default 2 intervals: its worker
    # was killed) is failed by the next sweeper that uses the study, which may then ask its
    # parameters again, up to retry_failed_trials times. RDB storages only (sqlite, PostgreSQL).
    heartbeat_interval: Optional[int] = 60
    grace_period: Optional[int] = None
    retry_failed_trials: int = 0


# The schema behind snn_sweep/conf/hydra/sweeper/optuna_trials.yaml: a misspelt key fails at
# composition.
ConfigStore.instance().store(group="hydra/sweeper", name="optuna_trials_schema",
                             node=OptunaTrialSweeperConf, provider="snn_sweep")


class OptunaTrialSweeper(upstream.OptunaSweeper):
    """Takes the upstream sweeper's arguments, `pruner` and the heartbeat settings; the loop
    behind them differs."""

    def __init__(self, pruner: Any = None, heartbeat_interval: Optional[int] = 60,
                 grace_period: Optional[int] = None, retry_failed_trials: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)  # instantiates the sampler as upstream does
        from ._impl import TrialSweeperImpl

        self.sweeper = TrialSweeperImpl(
            **{**kwargs, "sampler": self.sweeper.sampler}, pruner=pruner,
            heartbeat_interval=heartbeat_interval, grace_period=grace_period,
            retry_failed_trials=retry_failed_trials)
