"""The files of a run dir and result.json's schema.

result.json, metrics.csv, resume.pt, checkpoint.pt: atomic writes, result.json's fields, the
identity of a run's config, and finding a completed run of it."""
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Optional

from omegaconf import OmegaConf

from .config import MODEL_SETTINGS, InputError, effective_timesteps, model_settings, uses_neuron

log = logging.getLogger(__name__)

RESULT = "result.json"
RESUME = "resume.pt"  # the run dir's resumable checkpoint, rewritten after every epoch
TRAINED = ("metrics.csv", "checkpoint.pt")  # what a completed run leaves besides result.json

# result.json's schema, read by the trainer, the loggers and the aggregator. The fields that
# say how a run was set up (settings() writes them); every other field is a metric or status.
SETTINGS = ("model", "arch", "spiking", "encoder", "neuron", "timesteps", "beta", "readout",
            "dropout", "augment", "optimizer", "lr", "batch_size", "precision", "dataset",
            "seed", "optimized_metric", "pareto_metric")
TRIAL_FIELDS = ("optuna_study", "optuna_trial", "optuna_storage")  # optuna_trial.trial_info
# Numbers that are settings, not metrics: repeats do not average them.
NOT_AVERAGED = ("timesteps", "beta", "lr", "batch_size", "seed", "threads")
# The final metrics a logger reports, where a run has them.
FINAL = ("objective", "val_acc", "val_loss", "test_acc", "test_loss", "train_time_s",
         "energy_pj_per_sample", "spikes_per_sample")


def write_atomic(path: str, data: bytes) -> None:
    """Temp file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
    os.fchmod(fd, 0o644)  # mkstemp makes it 0600; run dirs are shared with other people
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path: str, obj: Dict) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def write_csv(path: str, rows: List[Dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


def settings(cfg) -> Dict:
    """The run's settings as result.json records them (cfg resolved by build.resolve), in the
    order of SETTINGS; pareto_metric only when set."""
    spiking = bool(cfg.model.spiking)
    neuron = spiking and uses_neuron(cfg)
    values = {
        "model": cfg.model.name,
        "arch": arch(cfg.model),
        "spiking": spiking,
        "encoder": cfg.encoder.name if spiking else None,
        "neuron": cfg.neuron.name if neuron else None,
        "timesteps": effective_timesteps(cfg),
        "beta": cfg.neuron.beta if neuron else None,
        "readout": model_settings(cfg.model).readout.value,
        "dropout": cfg.model.get("dropout"),
        "augment": cfg.augment.name if cfg.get("augment") is not None else "none",
        "optimizer": cfg.optimizer.name,
        "lr": cfg.optimizer.get("lr"),
        "batch_size": cfg.data.batch_size,
        "precision": cfg.trainer.precision.value,
        "dataset": cfg.data.name,
        "seed": cfg.seed,
        "optimized_metric": cfg.optimized_metric,
        "pareto_metric": cfg.pareto_metric,
    }
    return {k: values[k] for k in SETTINGS if k != "pareto_metric" or values[k] is not None}


def arch(model) -> str:
    """The model's layers, which match a spiking model with its ANN twin (the aggregator's
    versus table): its _target_ and the constructor's arguments that shape it, less the
    neuron, dropout, the sizes the dataset sets and the pipeline's own keys."""
    skip = {"_target_", "neuron", "dropout", "in_shape", "num_classes", *MODEL_SETTINGS}
    args = {k: v for k, v in OmegaConf.to_container(model, resolve=True).items() if k not in skip}
    return model._target_ + (f"({', '.join(f'{k}={v}' for k, v in sorted(args.items()))})"
                             if args else "")


# Settings added after runs were made (config path: the value those runs had): the augment
# group, the built-in conv nets' padding and BatchNorm, mixed precision.
ADDED_LATER = {"augment": None, "model.padding": 0, "model.norm": False,
               "trainer.precision": "fp32"}


def config_sha(cfg) -> str:
    """What identifies a run: its resolved config, less how it is watched and resumed and what
    its model ignores (an ANN's encoder, neuron and timesteps; the neuron group of a model not
    built from it; the timesteps of a model that fixes its own), so that two jobs training the
    same thing have the same sha."""
    c = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    c["trainer"] = {k: v for k, v in c["trainer"].items()
                    if k not in ("progress", "resume", "reuse")}
    for key in ("logger", "trusted_modules"):
        c.pop(key, None)
    # Settings added after runs were made, at the value those runs had, are left out: a
    # relaunched sweep still finds its completed runs and a killed one its resume.pt.
    for path, before in ADDED_LATER.items():
        *parents, key = path.split(".")
        node = c
        for parent in parents:
            node = node[parent]
        if node.get(key, before) == before:
            node.pop(key, None)
    if cfg.model.spiking:
        c["timesteps"] = effective_timesteps(cfg)
        if not uses_neuron(cfg):
            c.pop("neuron", None)
    else:
        for key in ("encoder", "neuron", "timesteps"):
            c.pop(key, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def completed(path: str, sha: str) -> Optional[Dict]:
    """The completed result.json of the same config at path, else None."""
    try:
        with open(path) as f:
            done = json.load(f)
    except (OSError, ValueError):
        return None
    ok = isinstance(done, dict) and done.get("status") == "completed"
    return done if ok and done.get("config_sha") == sha else None


def _first_completed(run_dirs, out_dir: str, sha: str):
    """(run dir, result) of the first of RUN_DIRS but OUT_DIR holding a completed run of the
    same config, else None."""
    out = os.path.abspath(out_dir)
    for path in run_dirs:
        if os.path.abspath(path) != out:
            done = completed(os.path.join(path, RESULT), sha)
            if done is not None:
                return path, done
    return None


def completed_sibling(out_dir: str, sha: str):
    """(job dir, result) of a completed job of the same config in the same multirun (a
    sibling dir next to Hydra's multirun.yaml), else None."""
    sweep = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isfile(os.path.join(sweep, "multirun.yaml")):
        return None
    return _first_completed((os.path.join(sweep, name) for name in sorted(os.listdir(sweep))),
                            out_dir, sha)


def _run_dirs(top: str):
    """The dirs under TOP holding a result.json, each level sorted by name, dot dirs skipped."""
    for root, subdirs, files in os.walk(top):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        if RESULT in files:
            yield root


def completed_under(dirs: List[str], out_dir: str, sha: str):
    """(run dir, result) of the first completed run of the same config under DIRS (searched
    in order, each dir tree sorted by name), else None."""
    return _first_completed((run for top in dirs for run in _run_dirs(top)), out_dir, sha)


def copy_trained(src: str, dst: str) -> None:
    """A completed run's files but result.json, from run dir SRC into DST."""
    for name in TRAINED:
        if os.path.exists(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))


def save_resume(out_dir: str, state: Dict) -> None:
    import torch  # here, so that the aggregator, which reads these files, starts without it
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(os.path.join(out_dir, RESUME), buf.getvalue())


def load_resume(out_dir: str, sha: str) -> Optional[Dict]:
    """resume.pt of this config, or None when the run dir has none."""
    import torch
    path = os.path.join(out_dir, RESUME)
    if not os.path.isfile(path):
        log.info("trainer.resume=true: no %s in %s yet, starting at epoch 1 (to continue a "
                 "killed run, name its dir: hydra.run.dir=<its run dir> trainer.resume=true; "
                 "a killed sweep: -m ... hydra.sweep.dir=<its sweep dir> trainer.resume=true)",
                 RESUME, out_dir)
        return None
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:
        raise InputError(f"trainer.resume=true: {path} is unreadable ({type(e).__name__}); "
                         f"remove it to start over") from None
    if state.get("config_sha") != sha:
        raise InputError(f"trainer.resume=true: {path} belongs to a run of another config; "
                         f"resume with that config, or remove it to start over")
    return state


def finish(out_dir: str, result: Dict) -> None:
    """The final result.json; resume.pt goes, since there is nothing left to resume."""
    write_json(os.path.join(out_dir, RESULT), result)
    if os.path.exists(os.path.join(out_dir, RESUME)):
        os.remove(os.path.join(out_dir, RESUME))
