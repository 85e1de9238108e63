"""snn_sweep's grid sweeper: Hydra's basic sweeper, with every job's config checked first.

The grid of `-m a=1,2 b=x,y` (and of `hydra.sweeper.params`), with max_batch_size, as Hydra's
basic sweeper makes it, written on Hydra's public plugin API only (hydra.plugins.sweeper.Sweeper,
hydra.core.override_parser, hydra.core.plugins, hydra.core.utils). It is snn_sweep's
`hydra/sweeper=basic`, Hydra's default: snn_sweep/conf/hydra/sweeper/basic.yaml comes before
Hydra's own option of that name on the search path, so a preset that overrides the sweeper
(hparams_search/*: Optuna) still can.

- Before the first job of a batch trains, every job's config is composed and checked as a run
  checks it (snn_sweep.build.preflight: value ranges, then model, encoder and optimizer built
  once): a bad value anywhere in the grid refuses the sweep in one line naming the job and the
  key, and nothing trains (Hydra's basic sweeper trains the jobs before it, then ends in a
  traceback).
- A job that fails while training (a diverged loss, say) does not stop the others: the sweep
  runs them all, then ends with one line listing the failed jobs and a non-zero exit (each
  failed job's result.json holds its error and traceback).

The sweep's last line, where its jobs are, comes from snn_sweep's Hydra callback
(snn_sweep.callbacks.SweepDone), as after any sweeper.
"""
import itertools
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException, HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict


class SweepError(CompactHydraException):
    """Hydra prints only the message of a CompactHydraException: one line, no traceback."""


def grid(overrides: Sequence[Override]) -> List[List[str]]:
    """Every job's overrides, in the basic sweeper's order: a key's later values replace its
    earlier ones (the command line those of hydra.sweeper.params), the last key varies fastest."""
    values: Dict[str, List[str]] = {}
    for o in overrides:
        key = o.get_key_element()
        if not o.is_sweep_override():
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise HydraException(f"GridSweeper does not support sweep type : "
                                 f"{o.value_type.name if o.value_type else o}")
    return [list(job) for job in itertools.product(*values.values())]


def _varying(batch: Sequence[Sequence[str]]) -> List[List[str]]:
    """Each job's overrides that not every job of the batch shares: what names the job."""
    common = set.intersection(*(set(o) for o in batch)) if len(batch) > 1 else set()
    return [[o for o in job if o not in common] for job in batch]


class GridSweeper(Sweeper):
    def __init__(self, max_batch_size: Optional[int] = None,
                 params: Optional[Dict[str, str]] = None) -> None:
        self.max_batch_size = max_batch_size  # null or -1: the whole grid in one batch
        self.params = params or {}
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> List[Sequence[JobReturn]]:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = grid(parser.parse_overrides(
            [f"{k}={v}" for k, v in self.params.items()] + list(arguments)))
        size = len(jobs) if self.max_batch_size in (None, -1) else self.max_batch_size
        if size <= 0:
            raise SweepError(f"hydra.sweeper.max_batch_size={self.max_batch_size} is not "
                             f"allowed: null, -1 or an integer >= 1")
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, failed = [], []
        for first in range(0, len(jobs), size):
            batch = jobs[first:first + size]
            self.preflight(batch, first)
            results = self.launcher.launch(batch, initial_job_idx=first)
            names = _varying(batch)
            for i, r in enumerate(results):
                if r.status == JobStatus.FAILED:  # kept for the end; the others go on
                    e = r._return_value  # not .return_value, which prints and raises
                    where = r.hydra_cfg.hydra.runtime.output_dir if r.hydra_cfg else "?"
                    failed.append(f"job {first + i} ({' '.join(names[i])}) in {where}: "
                                  f"{type(e).__name__}: {e}")
            returns.append([r for r in results if r.status != JobStatus.FAILED])
        if failed:
            raise SweepError(f"{len(failed)} of {len(jobs)} jobs failed (each one's "
                             f"result.json says why): {'; '.join(failed)}")
        return returns

    def preflight(self, batch: Sequence[Sequence[str]], first: int) -> None:
        """Every job of the batch composed and checked as its run will check it (Sweeper's
        validate_batch_is_legal composes only); the first bad one refuses the batch."""
        from snn_sweep.build import launch_dir_importable, preflight
        launch_dir_importable()
        loader = self.hydra_context.config_loader
        for i, (overrides, name) in enumerate(zip(batch, _varying(batch))):
            try:
                cfg = loader.load_sweep_config(master_config=self.config,
                                               sweep_overrides=list(overrides))
                with open_dict(cfg):
                    del cfg["hydra"]
                preflight(cfg)
            except Exception as e:
                reason = " ".join(str(e).split()) or type(e).__name__
                raise SweepError(f"job {first + i} ({' '.join(name)}): {reason}; no job of this "
                                 f"batch was run") from None
