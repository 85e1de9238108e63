"""custom_search_space for app.py: z is drawn around the x the sampler chose."""
from omegaconf import DictConfig
from optuna.trial import Trial


def configure(cfg: DictConfig, trial: Trial) -> None:
    x = trial.params["x"]
    trial.suggest_float("z", x - 0.5, x + 0.5)
