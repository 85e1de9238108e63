"""The sweep loop behind OptunaTrialSweeper: ask, launch, tell (imports Optuna).

It builds on hydra-optuna-sweeper's private `hydra_plugins.hydra_optuna_sweeper._impl`: upstream
has no public API for what this loop needs (its public OptunaSweeper only wraps OptunaSweeperImpl
in `self.sweeper` and runs upstream's own loop). From there come OptunaSweeperImpl (subclassed:
its __init__ arguments, setup, the attributes they set, _get_directions,
_process_searchspace_config, _parse_sweeper_params_config, _to_grid_sampler_choices and
_configure_trials) and create_params_from_overrides (the search space from `params` and the
command line, parsed exactly as upstream parses it; used through study_def.parse_space).
tests/test_sweeper_compat.py pins them: it fails naming what changed if an upstream release
renames or reshapes any of them.
"""
import functools
import logging
import math
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import OmegaConf
from optuna.trial import Trial, TrialState
from sqlalchemy.engine import make_url

from ._trials import (JOB_STATUS, SweepError, _fail_stale_trials, _grid_left, _Heartbeat,
                      _quote, _tell_study, _values, _why, trial_seed)
from .storage import experimental_ok, open_storage, public_storage
from .study_def import check_definition, definition, derived_name, parse_space
from .trial_env import ENV_STORAGE, ENV_STUDY, ENV_TRIAL, PRUNERS

log = logging.getLogger(__name__)


class TrialSweeperImpl(OptunaSweeperImpl):
    def __init__(self, *args: Any, pruner: Any = None, heartbeat_interval: Optional[int] = None,
                 grace_period: Optional[int] = None, retry_failed_trials: int = 0,
                 max_trials: Optional[int] = None, objectives: Optional[str] = None,
                 allow_changes: bool = False, not_in_study: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_trials = max_trials
        self.allow_changes, self.not_in_study = allow_changes, list(not_in_study)
        self.pruner = pruner  # a config: each job that reports to its trial instantiates it
        # the app's check of its objectives (see OptunaTrialSweeperConf), found as upstream
        # finds custom_search_space's, under the execution whitelist the app gives hydra.main
        self.objectives = objectives and instantiate({"_target_": objectives, "_partial_": True})
        self.heartbeat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period}
        if heartbeat_interval and retry_failed_trials:
            with experimental_ok():
                self.heartbeat["failed_trial_callback"] = \
                    optuna.storages.RetryFailedTrialCallback(max_retry=retry_failed_trials)

    def sweep(self, arguments: List[str]) -> None:
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        directions = self._get_directions()
        metrics = self._check(directions)
        self._process_searchspace_config()
        space, fixed, fixed_overrides = parse_space(self._parse_sweeper_params_config(),
                                                    arguments)
        self.defined = definition(space, fixed, fixed_overrides, self.not_in_study)
        if self.study_name is None:  # a relaunch of the same command continues the same study
            self.study_name = derived_name(self.defined, list(space))
        grid = None
        if isinstance(self.sampler, functools.partial) and \
                self.sampler.func is optuna.samplers.GridSampler:
            grid = {k: self._to_grid_sampler_choices(d) for k, d in space.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        study = self._open_study(directions, metrics)
        left = self.n_trials
        if self.max_trials is not None:  # trials a job finished, in this sweep or earlier ones
            done = sum("job_status" in t.user_attrs for t in study.get_trials(deepcopy=False))
            left = min(left, self.max_trials - done)
            if left <= 0:
                log.info(f"Study {study.study_name} holds {done} finished trials "
                         f"(max_trials={self.max_trials}): nothing left to run")
        failures: List[str] = []
        ran = 0
        # Optuna warns that heartbeats are meant for study.optimize; _Heartbeat does its part.
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
        while left > 0:
            _fail_stale_trials(study)  # the RUNNING trials of killed workers
            batch = min(self.n_jobs, left)
            if grid is not None:
                batch = min(batch, _grid_left(study, grid))
                if batch <= 0:
                    log.info(f"Study {study.study_name} has a trial for every point of its "
                             f"grid: nothing left to run")
                    break
            trials = [study.ask() for _ in range(batch)]
            overrides = self._configure_trials(trials, space, fixed, fixed_overrides)
            returns = self._launch(trials, overrides)
            states = [self._tell(study, t, r, len(directions)) for t, r in zip(trials, returns)]
            failed = [(t, r) for t, r, s in zip(trials, returns, states) if s == TrialState.FAIL]
            why = [f"trial {t.number}: {_why(r)}" for t, r in failed]
            if failed and len(failed) / len(returns) > self.max_failure_rate:
                for _, ret in failed:
                    if ret.status == JobStatus.FAILED and \
                            not isinstance(ret._return_value, CompactHydraException):
                        ret.return_value  # a bug in the job: its own error, with its traceback
                raise SweepError(f"{len(failed)} of {len(returns)} jobs returned no usable "
                                 f"value (max_failure_rate={self.max_failure_rate}): "
                                 f"{'; '.join(why)}")
            failures += why
            ran += len(trials)
            left -= len(trials)
        self._save_results(study, sweep_dir)
        if failures:  # tolerated (a diverged trial is an outcome of tuning), but said at the end
            log.warning(f"{len(failures)} of {ran} trials failed (within max_failure_rate="
                        f"{self.max_failure_rate}): {'; '.join(failures)}")

    def _check(self, directions: List[str]) -> Optional[List[str]]:
        """The objectives' metric names as the app's `objectives` function gives them (None
        without one: an app returns as many values as directions, as upstream takes them);
        refuses, in one line, settings that cannot work."""
        try:
            metrics = self.objectives(self.config, directions) if self.objectives else None
        except ValueError as e:
            raise SweepError(str(e)) from None
        if self.pruner is not None:
            if len(directions) > 1:
                raise SweepError("hydra.sweeper.pruner works with one direction only "
                                 "(Optuna does not prune multi-objective studies)")
            if self.storage is None:
                raise SweepError("hydra.sweeper.pruner needs hydra.sweeper.storage: "
                                 "each job reports its epochs to its trial through it")
            if not str(self.pruner.get("_target_", "")).startswith(PRUNERS):
                raise SweepError(f"hydra.sweeper.pruner._target_={self.pruner.get('_target_')}"
                                 f" is not allowed: a class in {PRUNERS}")
        return metrics

    def _open_study(self, directions: List[str], metrics: Optional[List[str]]
                    ) -> optuna.Study:
        storage = self.storage
        if isinstance(storage, str) and storage.startswith("sqlite:///"):
            db = make_url(storage).database
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
        # load_if_exists: of workers that create one study at once, the losers load it.
        self.store = open_storage(storage, **self.heartbeat)
        study = optuna.create_study(study_name=self.study_name, storage=self.store,
                                    sampler=self.sampler, directions=directions,
                                    load_if_exists=True)
        try:
            check_definition(study, self.defined, self.allow_changes)
        except ValueError as e:
            raise SweepError(str(e)) from None
        if len(directions) > 1 and metrics:
            with experimental_ok():
                study.set_metric_names(metrics)  # shown by the dashboard and trials_dataframe
        log.info(f"Study {study.study_name} in {public_storage(storage) or 'memory'} "
                 f"({len(study.trials)} trials so far), {type(study.sampler).__name__}, "
                 f"{','.join(directions)}"
                 + (f", pruner {self.pruner._target_}" if self.pruner is not None else ""))
        return study

    def _launch(self, trials: List[Trial], overrides: Sequence[Sequence[str]]
                ) -> Sequence[JobReturn]:
        numbers = [t.number for t in trials]
        consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        first = numbers[0] if consecutive else self.job_idx  # job dir N holds trial N
        try:
            with _Heartbeat(self.store, trials):
                returns = self.launcher.launch(overrides, initial_job_idx=first)
        except BaseException:  # Ctrl-C, a launcher error: no trial stays RUNNING for ever
            for trial in trials:
                _tell_study(trial.study, trial, None, TrialState.FAIL)
            raise
        self.job_idx = first + len(returns)
        return returns

    def _tell(self, study: optuna.Study, trial: Trial, ret: JobReturn, n: int) -> TrialState:
        values: Optional[List[float]] = None
        try:
            values = _values(ret, n)
            state = TrialState.COMPLETE
        except optuna.TrialPruned as e:
            log.info(f"Trial {trial.number}: {e or 'pruned'}")
            state = TrialState.PRUNED  # Optuna keeps its last reported value
        except Exception as e:
            log.warning(f"Trial {trial.number} failed: {e}")
            state = TrialState.FAIL
        if ret.hydra_cfg is not None:
            trial.set_user_attr("job_dir", ret.hydra_cfg.hydra.runtime.output_dir)
        trial.set_user_attr("job_status", JOB_STATUS[state])
        _tell_study(study, trial, values, state)
        return state

    def _save_results(self, study: optuna.Study, sweep_dir: Path) -> None:
        states = [t.state for t in study.trials]
        if TrialState.COMPLETE not in states:
            raise SweepError(
                f"no trial of study '{study.study_name}' completed "
                f"({states.count(TrialState.FAIL)} failed, {states.count(TrialState.PRUNED)} "
                f"pruned); each job's dir under {sweep_dir} says why")
        results: Dict[str, Any] = {"name": "optuna"}
        if len(study.directions) == 1:
            best = study.best_trial
            results.update(best_params=best.params, best_value=best.value)
            log.info(f"Best trial {best.number}: value {best.value}, parameters {best.params}")
        else:
            front = study.best_trials
            results["solutions"] = [{"params": t.params, "values": t.values} for t in front]
            log.info(f"Pareto front: trials {', '.join(str(t.number) for t in front)}")
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")

    def _configure_trials(self, trials: List[Trial], search_space_distributions: Dict[str, Any],
                          fixed_params: Dict[str, Any], fixed_overrides: List[str]
                          ) -> Sequence[Sequence[str]]:
        storage = public_storage(self.storage)
        out = []
        for trial in trials:
            self._seed_sampler(trial)
            [ovr] = super()._configure_trials([trial], search_space_distributions, fixed_params,
                                              fixed_overrides)
            env = {ENV_TRIAL: str(trial.number), ENV_STUDY: trial.study.study_name}
            if storage is not None:
                env[ENV_STORAGE] = storage
            out.append(tuple(ovr) + tuple(
                f"++hydra.job.env_set.{k}={_quote(v)}" for k, v in env.items()))
        return out

    def _seed_sampler(self, trial: Trial) -> None:
        """Draw each trial's parameters from its own stream, seeded with trial_seed (the
        sampler's seed, the study's name, the trial's number). The storage hands every number
        out once, so workers that share a study (or n_jobs > 1, or a study continued later)
        never draw the same points, and the same trials in the same order draw the same points
        again. Parameters are drawn at the first suggest, after ask: the sampler can still be
        swapped then."""
        seed = OmegaConf.select(self.config, "hydra.sweeper.sampler.seed")
        if seed is None or OmegaConf.select(self.config, "hydra.sweeper.sampler._partial_",
                                            default=False):
            return  # unseeded, or a grid (it draws no random numbers)
        trial.study.sampler = instantiate(
            self.config.hydra.sweeper.sampler,
            seed=trial_seed(seed, trial.study.study_name, trial.number),
            _execution_whitelist_=("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*"))
