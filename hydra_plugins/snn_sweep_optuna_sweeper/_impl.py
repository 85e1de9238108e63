"""The implementation behind optuna_trial_sweeper.OptunaTrialSweeper (imports Optuna); see there."""
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.launcher import Launcher
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import OmegaConf
from optuna.trial import Trial, TrialState
from sqlalchemy.engine import make_url

from snn_sweep.optuna_trial import ENV_STORAGE, ENV_STUDY, ENV_TRIAL, public_storage

log = logging.getLogger(__name__)


class NoCompletedTrialError(CompactHydraException):
    """Hydra prints only the message of a CompactHydraException: one line, no traceback."""


def _quote(value: str) -> str:
    """A Hydra override value that stays a string whatever it contains."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _TrialLauncher:
    """Wraps the real launcher: numbers jobs by trial and checks each return before Optuna does."""

    def __init__(self, launcher: Launcher, sweeper: "TrialSweeperImpl") -> None:
        self.launcher, self.sweeper = launcher, sweeper

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:
        trials = self.sweeper.batch
        numbers = [t.number for t in trials]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            initial_job_idx = numbers[0]  # job dir N holds trial N
        try:
            returns = self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx)
        except BaseException:  # Ctrl-C, a launcher error: no trial stays RUNNING for ever
            for trial in trials:
                try:
                    trial.study.tell(trial, state=TrialState.FAIL)
                except Exception:
                    pass  # already finished; the original error matters more
            raise
        for trial, ret in zip(trials, returns):
            _fail_unusable_return(ret)
            if ret.hydra_cfg is not None:
                trial.set_user_attr("job_dir", ret.hydra_cfg.hydra.runtime.output_dir)
            trial.set_user_attr("job_status", ret.status.name.lower())
        return returns


def _fail_unusable_return(ret: JobReturn) -> None:
    """Turn a completed job whose return Optuna cannot take into a failed one."""
    if ret.status != JobStatus.COMPLETED:
        return
    value = ret.return_value
    try:
        ok = math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        ret.status = JobStatus.FAILED
        ret.return_value = ValueError(f"the job returned {value!r}, not a finite number")


class TrialSweeperImpl(OptunaSweeperImpl):
    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = _TrialLauncher(self.launcher, self)
        self.batch: List[Trial] = []

    def sweep(self, arguments: List[str]) -> None:
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self._check_direction()
        self._prepare_storage()
        try:
            super().sweep(arguments)
        except ValueError as e:
            # Upstream asks study.best_trial at the end, which raises if nothing completed.
            study = self.batch[0].study if self.batch else None
            if study is None or any(t.state == TrialState.COMPLETE for t in study.trials):
                raise
            failed = sum(t.state == TrialState.FAIL for t in study.trials)
            raise NoCompletedTrialError(
                f"no trial of study '{study.study_name}' completed ({failed} failed); "
                f"each job's result.json under {sweep_dir} says why") from e

    def _check_direction(self) -> None:
        """Catch the easy mistake of tuning val_loss (or val_acc) the wrong way round."""
        metric = str(OmegaConf.select(self.config, "optimized_metric", default=""))
        wanted = {"acc": "maximize", "loss": "minimize"}.get(metric.rsplit("_", 1)[-1])
        directions = self._get_directions()
        if wanted and directions != [wanted]:
            raise CompactHydraException(
                f"optimized_metric={metric} needs hydra.sweeper.direction={wanted}, "
                f"not {','.join(directions)}")

    def _prepare_storage(self) -> None:
        storage = self.storage
        if isinstance(storage, str) and storage.startswith("sqlite:///"):
            db = make_url(storage).database
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
        if storage is None or self.study_name is None:
            return
        try:
            done = len(optuna.load_study(study_name=self.study_name, storage=storage).trials)
        except KeyError:  # a new study
            return
        seed = OmegaConf.select(self.config, "hydra.sweeper.sampler.seed")
        partial = OmegaConf.select(self.config, "hydra.sweeper.sampler._partial_", default=False)
        if done and seed is not None and not partial:
            self.sampler = instantiate(self.config.hydra.sweeper.sampler, seed=seed + done)
            log.info(f"Continuing study '{self.study_name}' after {done} trials; "
                     f"sampler seed {seed} + {done}")

    def _configure_trials(self, trials: List[Trial], search_space_distributions: Dict[str, Any],
                          fixed_params: Dict[str, Any]) -> Sequence[Sequence[str]]:
        overrides = super()._configure_trials(trials, search_space_distributions, fixed_params)
        self.batch = list(trials)
        storage = public_storage(self.storage)
        out = []
        for trial, ovr in zip(trials, overrides):
            env = {ENV_TRIAL: str(trial.number), ENV_STUDY: trial.study.study_name}
            if storage is not None:
                env[ENV_STORAGE] = storage
            out.append(tuple(ovr) + tuple(
                f"++hydra.job.env_set.{k}={_quote(v)}" for k, v in env.items()))
        return out
