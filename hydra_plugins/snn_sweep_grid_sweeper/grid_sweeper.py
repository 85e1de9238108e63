"""Hydra's basic (grid) sweeper with every job's config checked before the first trains.

The grid of `-m a=1,2 b=x,y`, with snn_sweep's checks added. It is
snn_sweep's `hydra/sweeper=basic`, Hydra's default: snn_sweep/conf/hydra/sweeper/basic.yaml
comes before Hydra's own option of that name on the search path, so a preset that overrides
the sweeper (hparams_search/*: Optuna) still can.

- Before the first job of a batch trains, every job's config is composed and checked as a run
  checks it (snn_sweep.build.preflight: value ranges, then model, encoder and optimizer built
  once): a bad value anywhere in the grid refuses the sweep in one line naming the job and the
  key, and nothing trains (Hydra's basic sweeper trains the jobs before it, then ends in a
  traceback).
- A job that fails while training (a diverged loss, say) does not stop the others: the sweep
  runs them all, then ends with one line listing the failed jobs and a non-zero exit (each
  failed job's result.json holds its error and traceback).
"""
import logging
from typing import Any, List, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from omegaconf import open_dict

log = logging.getLogger(__name__)


class SweepError(CompactHydraException):
    """Hydra prints only the message of a CompactHydraException: one line, no traceback."""


def _varying(batch: Sequence[Sequence[str]]) -> List[List[str]]:
    """Each job's overrides that not every job of the batch shares: what names the job."""
    common = set.intersection(*(set(o) for o in batch)) if len(batch) > 1 else set()
    return [[o for o in job if o not in common] for job in batch]


class GridSweeper(BasicSweeper):
    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.failed: List[str] = []
        self.launched = 0
        launch = self.launcher.launch

        def launch_and_collect(batch: Sequence[Sequence[str]], initial_job_idx: int
                               ) -> Sequence[JobReturn]:
            """The launcher's results without the failed jobs, which are kept for the summary
            (Hydra's basic sweeper raises the first failed job's error once its batch is done)."""
            results = launch(batch, initial_job_idx=initial_job_idx)
            self.launched += len(results)
            names = _varying(batch)
            for i, r in enumerate(results):
                if r.status == JobStatus.FAILED:
                    e = r._return_value  # not .return_value, which prints and raises
                    where = r.hydra_cfg.hydra.runtime.output_dir if r.hydra_cfg else "?"
                    self.failed.append(f"job {initial_job_idx + i} ({' '.join(names[i])}) in "
                                       f"{where}: {type(e).__name__}: {e}")
            return [r for r in results if r.status != JobStatus.FAILED]

        self.launcher.launch = launch_and_collect  # type: ignore[method-assign]

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from snn_sweep.build import launch_dir_importable, preflight
        launch_dir_importable()
        loader = self.hydra_context.config_loader
        first = sum(len(b) for b in self.overrides[:self.batch_index - 1])
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

    def sweep(self, arguments: List[str]) -> Any:
        from snn_sweep.loggers import sweep_done
        returns = super().sweep(arguments)
        if self.failed:
            raise SweepError(f"{len(self.failed)} of {self.launched} jobs failed (each one's "
                             f"result.json says why): {'; '.join(self.failed)}")
        log.info(sweep_done(self.config))
        return returns
