"""The sweep loop's work on single trials and batches: values out of job returns, tells,
heartbeats, the grid points left, each trial's sampler seed (imports Optuna)."""
import math
import reprlib
import threading
import zlib
from typing import Any, Dict, List, Optional, Sequence

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from optuna.trial import Trial, TrialState

from .storage import experimental_ok, trial_id

JOB_STATUS = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned",
              TrialState.FAIL: "failed"}  # each trial's user attribute job_status


class SweepError(CompactHydraException):
    """Hydra prints only the message of a CompactHydraException: one line, no traceback."""


def trial_seed(seed: int, study_name: str, number: int) -> int:
    """A trial's sampler seed. The study's name enters it (a stable hash, not Python's salted
    one) so that studies of different models, run with the same sampler seed, draw
    different points; the trial's number, so that each trial has its own stream."""
    return (seed + zlib.crc32(study_name.encode()) + number) % 2**32


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
            for id_ in self.ids:
                self.storage.record_heartbeat(id_)
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

