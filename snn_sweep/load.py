"""A run dir back into Python: its record, config and trained model, from result.json and checkpoint.pt alone.

    import snn_sweep
    run = snn_sweep.load_run("multirun/2026-12-07/10-00-00/3")
    run.model(x), run.record["val_acc"], run.cfg.timesteps

A run made before checkpoints carried their model (a bare state dict, no "config" in result.json)
is rebuilt from its .hydra/config.yaml instead."""
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from omegaconf import OmegaConf

from .config import Config
from .errors import InputError
from .rundir import CHECKPOINT, RESULT, read_record


@dataclass
class Run:
    record: Dict[str, Any]  # result.json ({} for a run that has none)
    cfg: Any  # the run's resolved config
    model: torch.nn.Module  # the selected epoch's weights, in eval mode


def run_config(run_dir: str, record: Dict[str, Any], data_root: Optional[str] = None):
    """The run's resolved config: result.json's, else .hydra/config.yaml resolved anew."""
    from .build import resolve
    if "config" in record:
        cfg = OmegaConf.merge(OmegaConf.structured(Config), record["config"])
    else:
        path = os.path.join(run_dir, ".hydra", "config.yaml")
        if not os.path.isfile(path):
            raise InputError(f"{run_dir}: no {RESULT} with a config, nor .hydra/config.yaml (a run "
                             f"dir of `python -m snn_sweep` holds them)")
        cfg = OmegaConf.load(path)
    if data_root is not None:
        cfg.data.root, cfg.data.download = data_root, False
    return cfg if "config" in record else resolve(cfg)


def load_run(run_dir: str, data_root: Optional[str] = None) -> Run:
    """The run in run_dir with its checkpoint's weights; InputError (one line) if it has none or
    they do not load. data_root: where its data set is now, if it moved."""
    from .build import build, build_model
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        raise InputError(f"{run_dir}: no {CHECKPOINT} (a completed run of `python -m snn_sweep` "
                         f"with trainer.checkpoint=true holds it)")
    record = read_record(os.path.join(run_dir, RESULT)) or {}
    cfg = run_config(run_dir, record, data_root)
    try:
        saved = torch.load(path, weights_only=True)
    except Exception as e:
        raise InputError(f"{path}: unreadable ({type(e).__name__})") from None
    if isinstance(saved, dict) and saved.get("format") == 2:
        model, state = build(cfg, "model", spec=saved["model"]), saved["state_dict"]
    else:  # a bare state dict
        model, state = build_model(cfg), saved
    try:
        model.load_state_dict(state)
    except Exception as e:
        raise InputError(f"{path}: does not load into the run's model "
                         f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    return Run(record, cfg, model.eval())
