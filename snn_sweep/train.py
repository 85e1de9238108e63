"""One training job: the run record, a completed run looked up, seeds trained, result.json's status.

config -> data -> encoder -> model -> metrics.csv, result.json, checkpoint.pt. The model,
encoder, optimizer and scheduler are whatever the config's `_target_`s name (build.py); they are
built and checked once before any data is read.

`train` returns the optimized metric as a float (for Hydra's sweepers); on failure it records
`status: failed` with the reason in result.json and raises, so a sweep sees a failed job. With
`repeats=K` a job trains K seeds in sub-dirs seed_<seed>/ and its own result.json holds their
mean, std and per-seed values. An `on_epoch` callback sees every epoch's metrics and may stop the
run (a pruner): result.json then says `status: pruned` and RunPruned is raised. SIGINT or
SIGTERM ends it at the next batch: result.json says `status: interrupted`, resume.pt stays for
trainer.resume=true, and RunInterrupted is raised.
"""
import logging
import os
import statistics
import traceback
from typing import Dict, List, Optional

import snntorch as snn
import torch
from omegaconf import OmegaConf

from . import __version__
from .build import resolve
from .errors import InputError
from .energy import METRICS_VERSION
from .loop import EpochCallback, RunPruned, fit, test_saved
from .record import IDENTITY_VERSION, NOT_AVERAGED, context, identity, now, settings, sha
from .runner import RunInterrupted, interruptible
from .rundir import RESULT, copy_trained, find_completed, finish, write_json
from .validate import validate

log = logging.getLogger(__name__)
__all__ = ["RunInterrupted", "RunPruned", "train", "train_result"]


def train(cfg, out_dir: str, extra: Optional[Dict] = None,
          on_epoch: Optional[EpochCallback] = None) -> float:
    """Train and evaluate one configuration (cfg.repeats seeds), leaving the run-dir files in
    out_dir; returns the optimized metric (the mean over seeds)."""
    return train_result(cfg, out_dir, extra, on_epoch)["objective"]


def train_result(cfg, out_dir: str, extra: Optional[Dict] = None,
                 on_epoch: Optional[EpochCallback] = None) -> Dict:
    """train, returning the whole result.json. `extra`: fields the caller adds to the record
    (an Optuna trial's, Hydra's choices, overrides and swept values)."""
    try:
        validate(cfg)
        if cfg.trainer.threads:  # before anything computes: the whole job runs on these threads
            torch.set_num_threads(cfg.trainer.threads)
        cfg = resolve(cfg)
    except InputError as e:  # a sweep's job dir says why it failed (a resumed run's is kept)
        if os.path.isdir(out_dir) and not os.path.exists(os.path.join(out_dir, RESULT)):
            write_json(os.path.join(out_dir, RESULT),
                       {"status": "failed", "error": f"InputError: {e}"})
        raise
    with interruptible():
        if cfg.repeats == 1:
            return _train_seed(cfg, out_dir, extra, on_epoch)
        return _train_seeds(cfg, out_dir, extra, on_epoch)


def _train_seeds(cfg, out_dir: str, extra: Optional[Dict], on_epoch: Optional[EpochCallback]
                 ) -> Dict:
    os.makedirs(out_dir, exist_ok=True)
    seeds = [cfg.seed + i for i in range(cfg.repeats)]
    result: Dict = {**record(cfg, extra), "repeats": cfg.repeats, "seeds": seeds,
                    "seed_dirs": [f"seed_{s}" for s in seeds]}
    write_json(os.path.join(out_dir, RESULT), result)
    runs: List[Dict] = []
    try:
        for i, seed in enumerate(seeds):
            seed_cfg = cfg.copy()
            seed_cfg.seed = seed
            offset = i * cfg.trainer.epochs
            step = None if on_epoch is None else (
                lambda epoch, row, offset=offset: on_epoch(offset + epoch, row))
            runs.append(_train_seed(seed_cfg, os.path.join(out_dir, f"seed_{seed}"), extra, step))
    except BaseException as e:
        result.update(status=ending(e), error=f"seed {seeds[len(runs)]}: {type(e).__name__}: {e}")
        write_json(os.path.join(out_dir, RESULT), ended(result))
        raise
    result.update(status="completed", **seed_statistics(runs))
    write_json(os.path.join(out_dir, RESULT), ended(result))
    return result


def record(cfg, extra: Optional[Dict]) -> Dict:
    """A new run's result.json (status running): its settings, identity, context and config."""
    ident = identity(cfg)
    return {"status": "running", **settings(cfg), **(extra or {}),
            "identity_version": IDENTITY_VERSION, "config_sha": sha(ident),
            "snn_sweep_version": __version__, "metrics_version": METRICS_VERSION,
            "identity": ident, "context": context(cfg),
            "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)}


def ending(e: BaseException) -> str:
    """result.json's status for a run that raised e."""
    return {RunPruned: "pruned", RunInterrupted: "interrupted"}.get(type(e), "failed")


def ended(result: Dict) -> Dict:
    result["context"]["ended"] = now()
    return result


def seed_statistics(runs: List[Dict]) -> Dict:
    """Mean and sample std of every numeric metric over seeds; the objective per seed too."""
    out: Dict = {}
    for key, value in runs[0].items():
        if key in NOT_AVERAGED or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        values = [float(r[key]) for r in runs]
        out[key], out[f"{key}_std"] = statistics.fmean(values), statistics.stdev(values)
    out["objective_per_seed"] = [r["objective"] for r in runs]
    return out


def _train_seed(cfg, out_dir: str, extra: Optional[Dict], on_epoch: Optional[EpochCallback]
                ) -> Dict:
    os.makedirs(out_dir, exist_ok=True)
    result = record(cfg, extra)
    found = find_completed(cfg, out_dir, result["config_sha"])
    if found is not None:
        return _found(cfg, found, out_dir, result)
    result_path = os.path.join(out_dir, RESULT)
    write_json(result_path, result)
    snn.SpikingNeuron.instances.clear()  # snnTorch's global neuron registry outlives runs
    try:
        fit(cfg, out_dir, result, on_epoch)
    except RunPruned:
        result["status"] = "pruned"
        finish(out_dir, ended(result))
        raise
    except RunInterrupted as e:  # resume.pt stays: trainer.resume=true goes on from it
        result.update(status="interrupted", error=str(e))
        write_json(result_path, ended(result))
        raise
    except BaseException as e:  # resume.pt stays here too
        result.update(status="failed", error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=5))
        write_json(result_path, ended(result))
        raise
    finally:
        snn.SpikingNeuron.instances.clear()
    if result.get("test_skipped"):  # resume.pt stays: the test set evaluated later from it
        write_json(result_path, ended(result))
    else:
        finish(out_dir, ended(result))
    return result


def _found(cfg, found, out_dir: str, result: Dict) -> Dict:
    """What a completed run of the same config found by find_completed makes of this one:
    itself, relaunched (its result returned); a sibling job of the sweep (this one recorded as
    its duplicate); a run under trainer.reuse (its files copied here). Itself with its test set
    skipped (an Optuna trial's) and trainer.test=true: the test set evaluated now."""
    where, path, done = found
    if where == "self" and done.get("test_skipped") and cfg.trainer.test:
        log.info("%s: evaluating the test set the run skipped, on its checkpoint.pt", out_dir)
        done = {k: v for k, v in done.items() if k != "test_skipped"}
        done.update(test_saved(cfg, out_dir, result["config_sha"]))
        snn.SpikingNeuron.instances.clear()
        finish(out_dir, done)
        return done
    if where == "self":  # a relaunched sweep finishes only what is missing
        log.info("%s already holds a completed run of this config: not training it again",
                 out_dir)
        return done
    if where == "sibling":  # a grid crossing settings the model ignores (an ANN's encoder)
        log.info("job %s already trained this config (settings this model ignores differ): "
                 "not training it again", path)
        result.update({k: v for k, v in done.items() if k not in result},
                      status="duplicate", duplicate_of=path)
        write_json(os.path.join(out_dir, RESULT), result)
        return result
    log.info("%s holds a completed run of this config (trainer.reuse): copying it, not "
             "training it again", path)
    copy_trained(path, out_dir)
    keep = {k: v for k, v in result.items() if k != "snn_sweep_version"}
    result = {**done, **keep, "status": "completed", "reused_from": path}
    finish(out_dir, result)
    return result
