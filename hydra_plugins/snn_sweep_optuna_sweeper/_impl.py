"""The implementation behind optuna_trial_sweeper.OptunaTrialSweeper (imports Optuna); see there."""
import functools
import itertools
import logging
import math
import reprlib
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import (OptunaSweeperImpl,
                                                      create_params_from_overrides)
from omegaconf import OmegaConf
from optuna.trial import Trial, TrialState
from sqlalchemy.engine import make_url

from snn_sweep.loggers import sweep_done
from snn_sweep.optuna_trial import (ENV_STORAGE, ENV_STUDY, ENV_TRIAL, PRUNERS,
                                    direction_for, experimental_ok, open_storage,
                                    public_storage, trial_id)

log = logging.getLogger(__name__)
JOB_STATUS = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned",
              TrialState.FAIL: "failed"}



def trial_seed(seed: int, study_name: str, number: int) -> int:
    """A trial's sampler seed. The study's name enters it (a stable hash, not Python's salted
    one) so that studies of different models, run with the same sampler seed, draw
    different points; the trial's number, so that each trial has its own stream."""
    return (seed + zlib.crc32(study_name.encode()) + number) % 2**32

class SweepError(CompactHydraException):
    """Hydra prints only the message of a CompactHydraException: one line, no traceback."""


def _quote(value: str) -> str:
    """A Hydra override value that stays a string whatever it contains."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _why(ret: JobReturn) -> str:
    """One line: why a job gave its trial no value."""
    if ret.status == JobStatus.FAILED:
        return f"{type(ret._return_value).__name__}: {ret._return_value}"
    return f"returned {reprlib.repr(ret._return_value)}"


def _values(ret: JobReturn, n: int) -> List[float]:
    """The job's objective value(s), one per direction (with several, a tuple or list as
    upstream takes); raises optuna.TrialPruned for a pruned job, what the job raised for a
    failed one, or ValueError (one line) for a return Optuna cannot take."""
    if ret.status == JobStatus.FAILED:  # not via return_value, which prints "Error executing job"
        raise ret._return_value
    value = ret.return_value
    try:
        if n > 1 and isinstance(value, (str, bytes)):
            raise TypeError  # iterable, but not a sequence of values
        values = [float(v) for v in (value if n > 1 else [value])]
    except (TypeError, ValueError):
        values = []
    if len(values) != n or not all(math.isfinite(v) for v in values):
        shown = reprlib.repr(value)  # a job may return anything, however long
        count = f" ({len(values)} values for {n} directions)" if values and \
            len(values) != n else ""
        raise ValueError(f"the job returned {shown}, not {n} finite number"
                         f"{'s' if n > 1 else ''}{count}")
    return values


def _tell_study(study: optuna.Study, trial: Trial, values: Optional[List[float]],
                state: TrialState) -> None:
    """study.tell; GridSampler calls study.stop() in it once its grid is used up, which raises
    outside study.optimize after the trial is recorded (upstream's loop lets it pass too)."""
    try:
        study.tell(trial, values, state=state, skip_if_finished=True)
    except RuntimeError as e:
        if not (isinstance(study.sampler, optuna.samplers.GridSampler)
                and "Study.stop" in str(e)):
            raise


def _grid_left(study: optuna.Study, grid: Dict[str, Sequence[Any]]) -> int:
    """How many trials the study's grid still holds: its points that no trial has taken
    (finished or running), plus WAITING trials (retries keep their point). Optuna's
    GridSampler reruns points once the grid is used up; a grid sweep runs each point once."""
    space = {name: list(choices) for name, choices in grid.items()}  # as stored in the trials
    taken, waiting = set(), 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            waiting += 1
        elif "grid_id" in t.system_attrs and t.system_attrs.get("search_space") == space:
            taken.add(t.system_attrs["grid_id"])
    return math.prod(len(v) for v in space.values()) - len(taken) + waiting


def _fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's fail_stale_trials: a no-op unless the storage records heartbeats."""
    with experimental_ok():
        optuna.storages.fail_stale_trials(study)


class _Heartbeat:
    """Records a heartbeat for each trial of a batch while its jobs run, as study.optimize does
    for its own trials; a killed sweeper stops beating and its trials go stale."""

    def __init__(self, storage: Any, trials: List[Trial]) -> None:
        self.interval = storage.get_heartbeat_interval() if isinstance(
            storage, optuna.storages.RDBStorage) else None
        self.storage, self.stop = storage, threading.Event()
        if self.interval:
            self.ids = [trial_id(storage, t.study.study_name, t.number) for t in trials]

    def _beat(self) -> None:
        while True:
            for trial_id in self.ids:
                self.storage.record_heartbeat(trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> "_Heartbeat":
        if self.interval:
            self.thread = threading.Thread(target=self._beat, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.interval:
            self.stop.set()
            self.thread.join()


class TrialSweeperImpl(OptunaSweeperImpl):
    def __init__(self, *args: Any, pruner: Any = None, heartbeat_interval: Optional[int] = None,
                 grace_period: Optional[int] = None, retry_failed_trials: int = 0,
                 max_trials: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_trials = max_trials
        self.pruner = pruner  # a config: each job instantiates it (snn_sweep.optuna_trial)
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
        space, fixed, fixed_overrides = create_params_from_overrides(
            self._parse_sweeper_params_config() + list(arguments))
        for name in fixed:
            space.pop(name, None)
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
        log.info(sweep_done(self.config))

    def _check(self, directions: List[str]) -> Optional[List[str]]:
        """The objectives' metric names where the app's config gives them (optimized_metric,
        pareto_metric, as snn_sweep's does), else None; refuses settings that cannot work.
        Any other app returns as many values as directions, as upstream takes them."""
        keys = list(itertools.takewhile(lambda k: k in self.config,
                                        ("optimized_metric", "pareto_metric")))
        metrics = [self.config[k] for k in keys][:len(directions)]
        if "pareto_metric" in keys:  # an app like snn_sweep's: 1 objective, or 2 with this one
            if len(directions) > 2:
                raise SweepError(f"hydra.sweeper.direction has {len(directions)} entries; this "
                                 f"app returns 1 (optimized_metric) or 2 (and pareto_metric)")
            if len(directions) == 2 and self.config.pareto_metric is None:
                raise SweepError("two directions need pareto_metric (the second objective), "
                                 "e.g. pareto_metric=val_energy_pj_per_sample")
        wanted = [direction_for(m) or d for m, d in itertools.zip_longest(metrics, directions)]
        if wanted != directions:
            show = lambda ds: ds[0] if len(ds) == 1 else f"[{','.join(ds)}]"  # noqa: E731
            key, metric = next((k, m) for k, m, w, d in zip(keys, metrics, wanted, directions)
                               if w != d)
            raise SweepError(f"{key}={metric} needs hydra.sweeper.direction={show(wanted)}, "
                             f"not {show(directions)}")
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
        named = len(metrics) == len(directions) and all(isinstance(m, str) for m in metrics)
        return metrics if named else None

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
