"""The run record: what identifies a run (versioned, apart from where it ran) and result.json's fields.

A run's identity is what is trained: the config paths in IDENTITY, less what its model ignores
(an ANN's encoder, neuron and timesteps; the neuron group of a model not built from it; the
timesteps of a model that fixes its own). Where and how it ran (CONTEXT: data path, download,
device, threads, ...) is recorded beside it and never hashed, so a sweep moved to another
machine or data path finds its completed runs. Every config key is in exactly one of the two
(tests/test_record.py), so a new key must be classified. Changing what IDENTITY holds changes
IDENTITY_VERSION; runs of earlier versions are recognised by `matches`.
"""
import copy
import datetime
import hashlib
import json
import platform
from typing import Any, Dict

from omegaconf import OmegaConf

from .config import MODEL_SETTINGS, effective_timesteps, model_settings, uses_neuron

IDENTITY_VERSION = 2
# What is trained. Nodes (model, encoder, ...) count whole, less their `name` (a label).
IDENTITY = ("model", "encoder", "neuron", "timesteps", "augment", "optimizer", "scheduler",
            "data.name", "data.dataset", "data.frames", "data.shape", "data.num_classes", "data.val_size",
            "data.split_seed", "data.train_subset", "data.batch_size", "seed", "repeats",
            "optimized_metric", "trainer.epochs", "trainer.early_stopping_patience",
            "trainer.precision")
# Keys added after version 2 began, at the value that trains what runs made before them
# trained: left out of the identity there, so that those runs keep their config_sha.
ADDED_AT_DEFAULT = {"data.frames": None, "model.beta_per_neuron": False}
# Where and how it ran: recorded in result.json's "context" (with host and versions), not hashed.
CONTEXT = ("data.root", "data.download", "data.cache", "data.eval_batch_size", "trainer.device",
           "trainer.threads", "trainer.progress", "trainer.checkpoint", "trainer.resume",
           "trainer.reuse", "trainer.compile", "trainer.test", "logger", "trusted_modules",
           "pareto_metric")

# result.json's flat fields that say how a run was set up (settings() writes them); every other
# flat field is a metric or status.
SETTINGS = ("model", "arch", "spiking", "encoder", "neuron", "timesteps", "beta", "readout",
            "dropout", "augment", "optimizer", "lr", "batch_size", "precision", "dataset",
            "seed", "optimized_metric", "pareto_metric")
TRIAL_FIELDS = ("optuna_study", "optuna_trial", "optuna_storage")  # an Optuna trial's (optuna_trial.py)
# Numbers that are settings, not metrics: repeats do not average them.
NOT_AVERAGED = ("timesteps", "beta", "lr", "batch_size", "seed", "threads")
# The final metrics a logger reports, where a run has them.
FINAL = ("objective", "val_acc", "val_loss", "test_acc", "test_loss", "train_time_s",
         "energy_pj_per_sample", "spikes_per_sample", "effective_acs_per_sample",
         "effective_macs_per_sample", "dense_ops_per_sample", "activation_sparsity",
         "membrane_updates_per_sample")
# The record's nested fields (not table cells).
NESTED = ("identity", "context", "choices", "overrides", "swept", "config")


def _select(config: Dict, path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _unlabelled(value: Any) -> Any:
    """A node without its `name` label (nested ones too): the label names an option, and the
    pipeline drops it before building, so it changes nothing that is trained."""
    if isinstance(value, dict):
        return {k: _unlabelled(v) for k, v in value.items()
                if not (k == "name" and "_target_" in value)}
    if isinstance(value, list):
        return [_unlabelled(v) for v in value]
    return value


def identity(cfg) -> Dict[str, Any]:
    """What identifies the run of cfg (resolved by build.resolve): IDENTITY's values, less what
    the model ignores; the model's neuron counts once, as the `neuron` entry (None for a model
    not built from one)."""
    c = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    out = {path: copy.deepcopy(_unlabelled(_select(c, path))) for path in IDENTITY}
    # the neuron the model is built with: the group's (${neuron}) or a node of the model's own
    out["neuron"] = out["model"].pop("neuron", None)
    if cfg.model.spiking:
        out["timesteps"] = effective_timesteps(cfg)
    else:  # on event data the frames an ANN sums are cut by timesteps
        out["encoder"] = out["neuron"] = None
        if out["data.frames"] is None:
            out["timesteps"] = None
    for path, default in ADDED_AT_DEFAULT.items():
        node, key = (out, path) if path in out else (out[path.split(".")[0]], path.split(".", 1)[1])
        if isinstance(node, dict) and key in node and node[key] == default:
            del node[key]
    return out


def sha(ident: Dict[str, Any]) -> str:
    """The run's id: a hash of its identity and IDENTITY_VERSION."""
    text = json.dumps({"version": IDENTITY_VERSION, **ident}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_sha(cfg) -> str:
    return sha(identity(cfg))


def context(cfg) -> Dict[str, Any]:
    """Where and how the run ran: CONTEXT's values (by their last key), host, the versions of
    Python, torch and snnTorch (snn_sweep's own is result.json's snn_sweep_version)."""
    import snntorch
    import torch

    c = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    out = {path.rsplit(".", 1)[-1]: _select(c, path) for path in CONTEXT
           if path not in ("logger", "trusted_modules", "trainer.progress")}
    out["data_root"] = out.pop("root")
    out["frames_cache"] = out.pop("cache")
    out.update(threads=torch.get_num_threads(), host=platform.node(),
               python=platform.python_version(), torch=torch.__version__,
               snntorch=snntorch.__version__, started=now())
    return out


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def settings(cfg) -> Dict:
    """The run's settings as result.json's flat fields (cfg resolved by build.resolve), in the
    order of SETTINGS; pareto_metric only when set."""
    spiking = bool(cfg.model.spiking)
    neuron = spiking and uses_neuron(cfg)
    values = {
        "model": cfg.model.name,
        "arch": arch(cfg.model),
        "spiking": spiking,
        "encoder": cfg.encoder.name if spiking else None,
        "neuron": cfg.model.neuron.get("name") if neuron else None,
        "timesteps": effective_timesteps(cfg),
        "beta": cfg.model.neuron.get("beta") if neuron else None,
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


def matches(done: Dict[str, Any], cfg, run_sha: str) -> bool:
    """Whether a result.json (or resume.pt) record `done` is of the run of cfg: by its sha for
    records of this IDENTITY_VERSION, by the first version's hash for runs made before it."""
    if done.get("identity_version") == IDENTITY_VERSION:
        return done.get("config_sha") == run_sha
    if "identity_version" in done or "config_sha" not in done:
        return False
    from .legacy import v1_shas
    return done["config_sha"] in v1_shas(cfg, done.get("threads"))
