"""How an Optuna sweep tells a job which trial it is (see hydra_plugins/snn_sweep_optuna_sweeper).

The sweeper adds `hydra.job.env_set` entries to each job's overrides; Hydra records them in the
job's .hydra/hydra.yaml and sets them while the job runs. No Optuna import here.
"""
from typing import Any, Dict, Mapping, Optional

ENV_TRIAL = "SNN_SWEEP_OPTUNA_TRIAL"
ENV_STUDY = "SNN_SWEEP_OPTUNA_STUDY"
ENV_STORAGE = "SNN_SWEEP_OPTUNA_STORAGE"  # the storage URL without its password


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
