"""A job's side of its Optuna trial: its result.json fields, and reporting epochs to the pruner.

The sweeper (hydra_plugins/snn_sweep_optuna_sweeper) adds `hydra.job.env_set` entries to each
job's overrides: trial number, study name and storage (password masked; trial_env.py names
them); Hydra records them in the job's .hydra/hydra.yaml and sets them while the job runs. A job
whose study lives in a storage reports each epoch's validation metric to its trial there and
asks the pruner the sweep configured (TrialReporter). Optuna is imported only then.
"""
import warnings
from typing import Any, Dict, Mapping, Optional

from hydra_plugins.snn_sweep_optuna_sweeper.storage import experimental_ok, open_storage, trial_id
from hydra_plugins.snn_sweep_optuna_sweeper.trial_env import (ENV_STORAGE, ENV_STUDY,
                                                              ENV_TRIAL, PRUNERS)
from omegaconf import OmegaConf

from .record import TRIAL_FIELDS


def trial_info(env_set: Mapping[str, str]) -> Dict[str, Any]:
    """The Optuna fields for result.json from the job's hydra.job.env_set; {} outside a study."""
    if ENV_TRIAL not in env_set:
        return {}
    values = (env_set.get(ENV_STUDY), int(env_set[ENV_TRIAL]), env_set.get(ENV_STORAGE))
    return dict(zip(TRIAL_FIELDS, values))


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
