"""What the sweeper tells each job of its trial: the env names it sets, the pruners allowed.

The sweeper adds `hydra.job.env_set` entries to each job's overrides (Hydra records them in the
job's .hydra/hydra.yaml, and every launcher sets them while the job runs); a job that reads them
can report to its own trial through the storage and ask the pruner that `hydra.sweeper.pruner`
configures, built only from a class in PRUNERS.
"""
ENV_TRIAL = "SNN_SWEEP_OPTUNA_TRIAL"  # the trial's number in its study
ENV_STUDY = "SNN_SWEEP_OPTUNA_STUDY"  # the study's name
ENV_STORAGE = "SNN_SWEEP_OPTUNA_STORAGE"  # the storage URL without its password; unset: memory
PRUNERS = "optuna.pruners."  # the only _target_ prefix a pruner config may name
