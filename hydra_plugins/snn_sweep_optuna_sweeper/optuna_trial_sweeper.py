"""Hydra's Optuna sweeper (hydra-optuna-sweeper 1.4) with what a sweep pipeline needs added.

A drop-in for `hydra/sweeper=optuna` in any Hydra app: sampler, direction, storage, study_name,
n_trials, n_jobs, max_failure_rate, params and custom_search_space are configured exactly as
upstream, with the same defaults, plus `pruner`, the heartbeat settings, `max_trials` and
`objectives`. An app selects it with `hydra/sweeper=snn_sweep_optuna` (stored below; Hydra
imports this module through the entry point in pyproject.toml). The plugin imports nothing of
snn_sweep; snn_sweep's presets use it as `hydra/sweeper=optuna_trials`, its own settings of this
schema (snn_sweep/conf/hydra/sweeper/optuna_trials.yaml).

Why a subclass: the trial only exists inside the sweeper (`study.ask()`), so the sweeper is the
one place that can hand each job its trial number without guessing. The number travels as
`hydra.job.env_set` overrides (trial_env.py); a job that knows its trial may report its
per-epoch values to it through the storage (storage.py opens it) and ask the pruner; a pruned
job raises optuna.TrialPruned, which upstream's loop would record as FAIL, so this sweeper runs
its own ask/launch/tell loop (_impl.py, on upstream's private _impl: see there).

Where it differs from upstream, and why:
- job numbers are trial numbers, so job dir N holds trial N even when a study is continued in
  the same sweep dir (upstream numbers each sweep's jobs from 0); each job gets
  SNN_SWEEP_OPTUNA_{TRIAL,STUDY,STORAGE} (storage without password), each trial the user
  attributes job_dir and job_status;
- `pruner` (an optuna.pruners.* config; none by default): the jobs instantiate it; a pruned
  job's trial is told PRUNED (upstream: FAIL), the sweep goes on. Only jobs that report to their
  trial are ever pruned;
- heartbeats (RDB storages): a RUNNING trial whose sweeper was killed is failed by the next
  sweeper that uses the study, and asked again with retry_failed_trials;
- max_trials caps the study's trials over all its sweeps, so a killed sweep relaunched as it
  was runs only the trials its study lacks;
- a seeded sampler draws each trial from `seed + trial number`, so workers sharing a study and
  a continued study draw new points (upstream replays the first run's); the points of a seeded
  study therefore differ from upstream's with the same seed;
- a return that is not one finite number per direction is told FAIL with one line why
  (upstream takes +-inf), and so are the trials of an interrupted batch (Ctrl-C): no trial
  stays RUNNING; a batch over max_failure_rate ends the sweep even when its failures are such
  returns rather than errors;
- a grid sampler runs each point once: a continued study runs the points left, or says in one
  line that none are (upstream reruns points once the grid is used up, and ends with a
  traceback when the grid's last trial fails);
- several directions take the app's tuple or list of values as upstream; `objectives` names an
  app's function that checks the directions against what the app returns, and names the
  objectives for the study;
- refused before any job runs: what `objectives` refuses, a pruner without a storage or with
  several directions; a sweep in which no trial completed ends with one clear line (upstream:
  a traceback);
- with no study_name, the study is named from what defines it, so a relaunch continues it
  (upstream: a new no-name-<uuid> study each launch); a continued study asked for another
  search space or other fixed overrides is refused (allow_changes=true takes them);
- the sqlite file's folder is created; multirun.yaml is written as Hydra's basic sweeper does.

Hydra imports this module to find the plugin, so it stays light: the loop, which imports
Optuna (slow to import), lives in _impl.py and _trials.py.
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
    # An optuna.pruners.* config with _target_ (snn_sweep's: its conf/hydra/sweeper/pruner/);
    # null: none.
    pruner: Any = None
    # While a job runs its sweeper records a heartbeat for its trial every heartbeat_interval
    # seconds; a RUNNING trial not heard of for grace_period (default 2 intervals: its worker
    # was killed) is failed by the next sweeper that uses the study, which may then ask its
    # parameters again, up to retry_failed_trials times. RDB storages only (sqlite, PostgreSQL).
    heartbeat_interval: Optional[int] = 60
    grace_period: Optional[int] = None
    retry_failed_trials: int = 0
    # The most trials the study is to hold, those of earlier sweeps included (the trials a job
    # finished: completed, pruned or failed): a sweep runs n_trials or what is left, so a killed
    # sweep relaunched as it was completes its study instead of adding n_trials (Optuna's
    # MaxTrialsCallback, for this loop). null: n_trials more, as upstream.
    max_trials: Optional[int] = None
    # The dotted name of the app's function f(config, directions), called once before the study
    # opens: it returns the objectives' metric names (the study's, with several directions) or
    # None, and raises ValueError (its one-line message) to refuse the sweep, e.g. a direction
    # that does not fit the app's metric. null: no check, no names (as upstream). Found as
    # upstream finds custom_search_space's: an app allows it in hydra.main's
    # execution_whitelist.
    objectives: Optional[str] = None
    # With study_name null the study is named from what defines it (study_def.py): the tuned
    # keys' distributions and the fixed overrides (the task's and params'), e.g.
    # rate-tutorial5-num_hidden-1a2b3c4d, so the same command relaunched continues it. That
    # definition is stored in the study; a sweep that asks an existing study for another one
    # (another budget, another search space) is refused in one line, unless allow_changes.
    allow_changes: bool = False
    # Override keys (and the keys below them) that do not define a study, e.g. data paths or
    # the device: left out of the derived name and of the check.
    not_in_study: List[str] = field(default_factory=list)


# The schema of an app's own settings of this sweeper (snn_sweep's optuna_trials.yaml): a
# misspelt key fails at composition.
ConfigStore.instance().store(group="hydra/sweeper", name="optuna_trials_schema",
                             node=OptunaTrialSweeperConf, provider="snn_sweep")
# The same, ready for any Hydra app: hydra/sweeper=snn_sweep_optuna in place of optuna.
ConfigStore.instance().store(group="hydra/sweeper", name="snn_sweep_optuna",
                             node=OptunaTrialSweeperConf, provider="snn_sweep")


class OptunaTrialSweeper(upstream.OptunaSweeper):
    """Takes the upstream sweeper's arguments and the settings above; the loop behind them
    differs."""

    def __init__(self, pruner: Any = None, heartbeat_interval: Optional[int] = 60,
                 grace_period: Optional[int] = None, retry_failed_trials: int = 0,
                 max_trials: Optional[int] = None, objectives: Optional[str] = None,
                 allow_changes: bool = False, not_in_study: Optional[List[str]] = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)  # instantiates the sampler as upstream does
        from ._impl import TrialSweeperImpl

        self.sweeper = TrialSweeperImpl(
            **{**kwargs, "sampler": self.sweeper.sampler}, pruner=pruner,
            heartbeat_interval=heartbeat_interval, grace_period=grace_period,
            retry_failed_trials=retry_failed_trials, max_trials=max_trials,
            objectives=objectives, allow_changes=allow_changes,
            not_in_study=list(not_in_study or ()))
