"""How an Optuna sweep and its jobs talk (the sweeper: hydra_plugins/snn_sweep_optuna_sweeper).

The sweeper adds `hydra.job.env_set` entries to each job's overrides: trial number, study name
and storage (password masked); Hydra records them in the job's .hydra/hydra.yaml and sets them
while the job runs. A job whose study lives in a storage reports each epoch's validation metric
to its trial there and asks the pruner the sweep configured (TrialReporter). Optuna is imported
only then.
"""
import os
import time
import warnings
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

from omegaconf import OmegaConf

ENV_TRIAL = "SNN_SWEEP_OPTUNA_TRIAL"
ENV_STUDY = "SNN_SWEEP_OPTUNA_STUDY"
ENV_STORAGE = "SNN_SWEEP_OPTUNA_STORAGE"  # the storage URL without its password
PRUNERS = "optuna.pruners."  # the only _target_ prefix a pruner config may name


def direction_for(metric: Optional[str]) -> Optional[str]:
    """How a metric is tuned: accuracy up; loss, spikes, synaptic operations, energy down."""
    kind = str(metric).rsplit("_", 1)[-1] if metric else ""
    if kind == "acc":
        return "maximize"
    if kind == "loss" or any(w in str(metric) for w in ("energy", "spikes", "synops")):
        return "minimize"
    return None


def trial_info(env_set: Mapping[str, str]) -> Dict[str, Any]:
    """The Optuna fields for result.json from the job's hydra.job.env_set; {} outside a study."""
    if ENV_TRIAL not in env_set:
        return {}
    return {"optuna_study": env_set.get(ENV_STUDY), "optuna_trial": int(env_set[ENV_TRIAL]),
            "optuna_storage": env_set.get(ENV_STORAGE)}


def public_storage(storage: Any) -> Optional[str]:
    """A storage URL with any password masked, fit for result.json, logs and messages."""
    if storage is None:
        return None
    try:
        from sqlalchemy.engine import make_url
        return make_url(str(storage)).render_as_string(hide_password=True)
    except Exception:  # not an RDB URL: a string as given, an instantiated storage by type
        return storage if isinstance(storage, str) else type(storage).__name__


JOURNAL = "journal:///"


@contextmanager
def experimental_ok() -> Iterator[None]:
    """Use Optuna's experimental APIs (heartbeats, RetryFailedTrialCallback, WilcoxonPruner,
    set_metric_names, the matplotlib plots) without their ExperimentalWarning each time."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def trial_id(storage: Any, study_name: str, number: int) -> int:
    """The storage's id of trial `number` of a study."""
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study_name), number)


def open_storage(url: Any, **heartbeat: Any) -> Any:
    """An Optuna storage for a URL: `journal:///PATH` (PATH relative, or absolute with a
    fourth slash, as in sqlite:///) is a JournalStorage in a file, for clusters without a
    database server (a lock file beside it; fine on NFS); any other string is an RDB URL as
    Optuna takes it (sqlite:///..., postgresql+psycopg2://...), with `heartbeat`
    (heartbeat_interval, grace_period, failed_trial_callback) passed to RDBStorage; anything
    else is passed on. Workers that open an empty database at the same moment all race to
    create Optuna's schema; the losers retry."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    if not isinstance(url, str):
        return url
    if url.startswith(JOURNAL):
        path = url[len(JOURNAL):]
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    for attempt in range(6):
        try:
            with experimental_ok():  # heartbeats
                return optuna.storages.RDBStorage(url, **heartbeat)
        except (IntegrityError, ProgrammingError):  # e.g. UniqueViolation on CREATE TYPE
            if attempt == 5:
                raise
            time.sleep(0.2 * (attempt + 1))


def load_study(url: str, name: Optional[str], known: Sequence[str] = (),
               name_flag: str = "--study-name") -> Any:
    """The study `name` in the storage at url (--study URL), or, with no name, the only study
    among `known` that the storage holds (else the only one it holds). ValueError with a
    one-line reason when the file is missing, the storage unreadable or the name unclear."""
    import optuna  # slow to import: only where a study is asked for

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shown = public_storage(url)
    for scheme, kind in (("sqlite:///", "sqlite"), (JOURNAL, "journal")):
        path = url[len(scheme):] if url.startswith(scheme) else None
        if path and path != ":memory:" and not os.path.isfile(path):  # it would be created
            raise ValueError(f"--study {shown}: no such {kind} file {path}")
    try:
        storage = open_storage(url)
        studies = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
    except Exception as e:
        raise ValueError(f"--study {shown}: cannot open the storage "
                         f"({' '.join(str(e).split())})") from None
    if name is None:
        candidates = [s for s in known if s in studies] or studies
        if len(candidates) != 1:
            raise ValueError(f"--study {shown}: holds studies {', '.join(studies) or 'none'}; "
                             f"pass {name_flag}")
        name = candidates[0]
    if name not in studies:
        raise ValueError(f"--study {shown}: no study named {name!r} "
                         f"(it holds: {', '.join(studies) or 'none'})")
    return optuna.load_study(study_name=name, storage=storage)


class TrialReporter:
    """A job's handle on its own trial: per-epoch values go in, the pruner's verdict comes out."""

    def __init__(self, storage: str, study_name: str, number: int, pruner: Any = None) -> None:
        import optuna
        from hydra.utils import instantiate

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if pruner is None:
            pruner = optuna.pruners.NopPruner()  # load_study's default would be a MedianPruner
        else:
            with experimental_ok():  # WilcoxonPruner
                pruner = instantiate(pruner, _execution_whitelist_=(PRUNERS + "*",))
        store = open_storage(storage)
        study = optuna.load_study(study_name=study_name, storage=store, pruner=pruner)
        self.trial = optuna.Trial(study, trial_id(store, study_name, number))
        self.single = len(study.directions) == 1  # Optuna takes no intermediate value pairs

    def __call__(self, step: int, value: float) -> bool:
        """Record value at step; True when the pruner says stop."""
        if not self.single:
            return False
        self.trial.report(value, step)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Wilcoxon's "too few steps yet"
            return bool(self.trial.should_prune())

    def set_user_attrs(self, attrs: Mapping[str, Any]) -> None:
        for key, value in attrs.items():
            self.trial.set_user_attr(key, value)


def reporter_from_hydra(hydra_cfg: Any) -> Optional[TrialReporter]:
    """The job's TrialReporter in an Optuna sweep with a storage; None otherwise (a study held
    in memory lives in the sweeper's process, out of a job's reach)."""
    env = hydra_cfg.job.env_set
    storage = OmegaConf.select(hydra_cfg, "sweeper.storage", default=None)
    if ENV_TRIAL not in env or not isinstance(storage, str):
        return None
    return TrialReporter(storage, env[ENV_STUDY], int(env[ENV_TRIAL]),
                         OmegaConf.select(hydra_cfg, "sweeper.pruner", default=None))
