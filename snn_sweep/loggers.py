"""Experiment loggers (the `logger` config group): where a run's metrics go besides its run dir.

The run-dir files (metrics.csv, result.json, checkpoint.pt) are always written, since the
aggregator reads them; `csv`, the default, adds nothing to them. `tensorboard` writes an event
file per job (torch.utils.tensorboard: per-epoch scalars, the resolved config as text, hparams
with the final metrics for the HParams tab); `mlflow` logs one MLflow run per job (parameters,
per-epoch metrics, result.json and the checkpoint as artifacts), the jobs of a sweep in one
experiment. Several at once: `logger=[csv,tensorboard,mlflow]`. A logger that fails says so in
one warning line and is dropped; the run goes on.

Each entry of the `logger` node with a `_target_` is built by build.py, called with the run's
out_dir and sweep_dir (None for a single run) besides its own settings; a user's logger is any
class with that constructor and the methods start(cfg, name), epoch(step, row) and
finish(cfg, result, out_dir).
"""
import logging
import os
import time
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

from .build import build
from .record import FINAL

log = logging.getLogger(__name__)


def flat(cfg: Any) -> Dict[str, Any]:
    """The resolved config as {dotted.key: value}, lists as text."""
    out: Dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = str(node) if isinstance(node, list) else node
    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
    return {k: v for k, v in out.items() if not k.startswith("logger.")}


class TensorBoard:
    def __init__(self, out_dir: str, sweep_dir: Optional[str] = None,
                 log_dir: str = "tensorboard") -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(os.path.join(out_dir, log_dir))

    def start(self, cfg: Any, name: str) -> None:
        self.writer.add_text("config", "```\n" + OmegaConf.to_yaml(cfg, resolve=True) + "```")

    def epoch(self, step: int, row: Dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def finish(self, cfg: Any, result: Dict[str, Any], out_dir: str) -> None:
        hparams = {k: v for k, v in flat(cfg).items() if isinstance(v, (int, float, str, bool))}
        metrics = {f"final/{k}": result[k] for k in FINAL if isinstance(result.get(k), float)}
        # run_name ".": the same run as the per-epoch scalars, one HParams session per job
        self.writer.add_hparams(hparams, metrics, run_name=".")
        self.writer.close()


class MLflow:
    def __init__(self, out_dir: str, sweep_dir: Optional[str] = None,
                 tracking_uri: str = "sqlite:///mlflow.db", experiment_name: Optional[str] = None,
                 artifact_location: Optional[str] = None) -> None:
        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no table-creation chatter
        self.mlflow = mlflow
        self.client = mlflow.MlflowClient(tracking_uri)
        # A sweep's jobs in one experiment named after its sweep dir; single runs in snn_sweep.
        name = experiment_name or (sweep_dir and os.path.abspath(sweep_dir)) or "snn_sweep"
        found = self.client.get_experiment_by_name(name)
        self.experiment = found.experiment_id if found else self.client.create_experiment(
            name, artifact_location=artifact_location and os.path.abspath(artifact_location))

    def start(self, cfg: Any, name: str) -> None:
        self.run = self.client.create_run(self.experiment, run_name=name).info.run_id
        params = [self.mlflow.entities.Param(k, str(v)) for k, v in flat(cfg).items()]
        self.client.log_batch(self.run, params=params)

    def epoch(self, step: int, row: Dict[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [self.mlflow.entities.Metric(k, float(v), now, step)
                   for k, v in row.items() if k != "epoch"]
        self.client.log_batch(self.run, metrics=metrics)

    def finish(self, cfg: Any, result: Dict[str, Any], out_dir: str) -> None:
        for key in FINAL:
            if isinstance(result.get(key), float):
                self.client.log_metric(self.run, f"final_{key}", result[key])
        self.client.set_tag(self.run, "status", result.get("status"))
        for name in ("result.json", "checkpoint.pt"):
            if os.path.isfile(os.path.join(out_dir, name)):
                self.client.log_artifact(self.run, os.path.join(out_dir, name))
        state = {"completed": "FINISHED", "pruned": "KILLED"}.get(result.get("status"), "FAILED")
        self.client.set_terminated(self.run, state)


class Loggers:
    """The configured loggers behind one guard: a logger that raises is reported and dropped."""

    def __init__(self, cfg: Any, out_dir: str, name: str, sweep_dir: Optional[str]) -> None:
        self.cfg, self.out_dir, self.live = cfg, out_dir, []
        for kind, options in (cfg.get("logger") or {}).items():
            if not options or "_target_" not in options:
                continue  # csv: the run-dir files, written by the trainer
            made = self._call(kind, lambda: build(cfg, f"logger.{kind}", partial=True,
                                                  out_dir=out_dir, sweep_dir=sweep_dir))
            if made is not None:
                self.live.append((kind, made))
        self._each("start", cfg, name)

    def _call(self, kind: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as e:  # never let a logger stop training
            log.warning(f"logger {kind} failed and is dropped ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]}); the run goes on")
            self.live = [(k, lg) for k, lg in self.live if k != kind]
            return None

    def _each(self, method: str, *args: Any) -> None:
        for kind, logger in list(self.live):
            self._call(kind, lambda: getattr(logger, method)(*args))

    def epoch(self, step: int, row: Dict[str, float]) -> bool:
        self._each("epoch", step, row)
        return False  # never asks to stop

    def finish(self, result: Dict[str, Any]) -> None:
        self._each("finish", self.cfg, result, self.out_dir)

