"""The lines a run or sweep ends with: where its files are (a sweep's from a Hydra callback).

A sweep's last line comes from SweepDone, configured under `hydra.callbacks` in
snn_sweep/conf/config.yaml, so that it follows any sweeper (the grid, Optuna's); a single run's
from snn_sweep/__main__.py.
"""
import logging
import os
import sys
from typing import Any

from hydra.experimental.callback import Callback
from hydra_plugins.snn_sweep_optuna_sweeper.storage import public_storage
from hydra_plugins.snn_sweep_optuna_sweeper.study_def import study_name
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
# What snn_sweep's config has Hydra build in a sweep's own process: this module's callback and
# the Optuna sweeper's `objectives` check. Hydra asks for such targets to be allowed from
# trusted code: hydra.main's execution_whitelist (snn_sweep/__main__.py).
HYDRA_TARGETS = ("snn_sweep.callbacks.SweepDone", "snn_sweep.objectives.sweep_objectives")


def shown(path: str) -> str:
    """path relative to the folder the command ran in, where it lies below it."""
    rel = os.path.relpath(os.path.abspath(path))
    return path if rel.startswith("..") else rel


def sweep_done(config: Any) -> str:
    """The last line of a sweep: where its jobs are and the command that makes its tables
    and plots."""
    sweep = shown(config.hydra.sweep.dir)
    command = f"python -m snn_sweep.aggregate {sweep}"
    storage = OmegaConf.select(config, "hydra.sweeper.storage")
    if storage:  # an Optuna study that outlives the sweep: its tables too
        command += f" --study {public_storage(storage)}"
        name = study_name(config)  # the study's derived name when none was given
        if name is not None:
            command += f" --study-name {name}"
        # what the study tuned: its trials skip the test set (trainer.test), so no test_acc
        metric = OmegaConf.select(config, "optimized_metric")
        if metric:
            command += f" --metric {metric}"
    return f"Done: one dir per job in {sweep}; tables and plots: {command}"


class SweepDone(Callback):
    """Logs sweep_done once a sweep has ended well."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra calls this in a `finally`: an exception in flight is the sweep's failure (a
        # refused batch, failed jobs, Ctrl-C), whose own line is then the last word.
        if sys.exc_info()[0] is None:
            log.info(sweep_done(config))
