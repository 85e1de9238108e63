"""Config nodes with `_target_` -> objects, built only from trusted modules.

The model (and its neuron), encoder, augmentation, optimizer, scheduler, dataset and loggers,
each built by `hydra.utils.instantiate` with an execution whitelist.

A config may only name targets in trusted modules: this package and the libraries it builds
from (TRUSTED), the modules in the folder a run is launched from (the user's own code), and the
module prefixes listed in the config's `trusted_modules`. Anything else is refused in one line
naming the key and how to allow it, as is a target that cannot be imported, takes other
arguments, or returns the wrong thing. `resolve` builds everything once before training, so a
bad `_target_` fails before any work starts, and fills in what a config may leave out (a model's
`spiking`, the nodes' `name`s).
"""
import os
import sys
from typing import Any, Callable, Dict, List, Optional

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from .config import (MODEL_SETTINGS, NEURON_SETTINGS, effective_timesteps, frame_count,
                     model_settings, neuron_key)
from .encoders import frame_counts
from .errors import InputError
from .models import layer_neuron
from .validate import check_arguments, validate

# The package and the libraries whose classes and functions its configs name.
TRUSTED = ("snn_sweep", "torch.optim", "torch.nn", "torchvision.datasets", "tonic.datasets",
           "snntorch", "optuna.pruners")
# Keys of a scheduler left `???` that resolve fills with the run's number of optimizer steps.
STEP_COUNTS = ("T_max", "total_iters", "total_steps")
LAUNCH_DIR = os.getcwd()  # where the run was launched (Hydra may change into the run dir)


def local_modules(folder: str) -> List[str]:
    """Top-level modules in folder: its .py files and its packages."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted({n[:-3] for n in names if n.endswith(".py") and n[:-3].isidentifier()} |
                  {n for n in names if n.isidentifier()
                   and os.path.isfile(os.path.join(folder, n, "__init__.py"))})


def whitelist(cfg) -> List[str]:
    """Hydra's execution whitelist for this run: prefix.* of every trusted module."""
    extra = list(OmegaConf.select(cfg, "trusted_modules", default=None) or [])
    return [f"{m}.*" for m in (*TRUSTED, *local_modules(LAUNCH_DIR), *extra)]


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    cause = e.__cause__ or e.__context__
    if isinstance(e, InstantiationException) and "Error locating target" in text and cause:
        text = f"cannot be imported ({type(cause).__name__}: {' '.join(str(cause).split())})"
    return text[:300]


def spec_of(cfg, key: str, drop: tuple = ("name",)) -> Dict[str, Any]:
    """The node cfg.<key> as instantiate builds it: resolved, less the pipeline's own keys
    (drop) and the `name` label of any node nested in it (the model's neuron)."""
    spec = OmegaConf.to_container(OmegaConf.select(cfg, key), resolve=True, enum_to_str=True)
    for k in drop:
        spec.pop(k, None)
    for value in spec.values():
        if isinstance(value, dict) and "_target_" in value:
            value.pop("name", None)
    return spec


def model_spec(cfg) -> Dict[str, Any]:
    """What build_model instantiates: checkpoint.pt keeps it to rebuild the model."""
    return spec_of(cfg, "model", drop=MODEL_SETTINGS)


def build(cfg, key: str, *args: Any, partial: bool = False, call: bool = True,
          drop: tuple = ("name",), spec: Optional[Dict[str, Any]] = None, **kwargs: Any) -> Any:
    """instantiate(cfg.<key>) (or of spec, given) with the run's whitelist, less the
    pipeline's own keys (drop); with partial, that partial called with *args, **kwargs (or
    returned, with call=False). Any failure is one InputError line naming the key."""
    spec = spec_of(cfg, key, drop) if spec is None else spec
    target = spec.get("_target_")
    allowed = whitelist(cfg)
    try:
        made = instantiate(spec, _partial_=partial, _convert_="all",
                           _execution_whitelist_=allowed)
        return made(*args, **kwargs) if partial and call else made
    except InputError:
        raise
    except InstantiationException as e:
        text = _reason(e).split(" full_key: ")[0]
        inner = str(e).rsplit("\nfull_key: ", 1)[1:]
        if inner:  # a node inside this one failed (the neuron's spike_grad)
            key, target = f"{key}.{inner[0]}", _target_at(spec, inner[0]) or target
        if "not in the Hydra execution whitelist" in text:
            top = str(target).split(".")[0]
            raise InputError(f"{key}._target_={target!r} is not in a trusted module: add "
                             f"trusted_modules=[{top}] (or run from the folder that holds "
                             f"{top}); trusted now: {', '.join(a[:-2] for a in allowed)}"
                             ) from None
        raise InputError(f"{key}._target_={target!r}: {text}") from None
    except Exception as e:  # the target's own complaint: a wrong argument, a bad value
        check_arguments(key, target, spec)  # a value of a type its signature does not take
        raise InputError(f"{key} ({target}): {type(e).__name__}: {_reason(e)}") from None


def _target_at(spec: Dict[str, Any], path: str) -> Optional[str]:
    """The _target_ of the node at a dotted path inside spec, if there is one."""
    node: Any = spec
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node.get("_target_") if isinstance(node, dict) else None


def build_model(cfg) -> torch.nn.Module:
    model = build(cfg, "model", spec=model_spec(cfg))
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model._target_={cfg.model._target_!r} returned a "
                         f"{type(model).__name__}, not a torch.nn.Module")
    return model


def check_neuron(cfg) -> None:
    """Build the model's neuron node (its partial) and make one neuron from it, so that a bad
    target or argument fails in one line naming the neuron, not the model built from it."""
    key = neuron_key(cfg)
    if key is None:
        return
    make = build(cfg, key, partial=True, call=False, drop=NEURON_SETTINGS)
    target = OmegaConf.select(cfg, key)._target_
    try:
        with torch.random.fork_rng(devices=[]):  # a neuron with weights leaves the RNG as it was
            # as a model makes one, given a layer width (snn.RLeaky needs it)
            neuron = layer_neuron(make, width=1)
    except Exception as e:
        raise InputError(f"{key} ({target}): {type(e).__name__}: {_reason(e)}") from None
    if not isinstance(neuron, torch.nn.Module):
        raise InputError(f"{key}._target_={target!r} made a {type(neuron).__name__}, not a "
                         f"neuron (a torch.nn.Module)")


def build_encoder(cfg) -> Callable[..., torch.Tensor]:
    """The encoder as a function (x, num_steps) -> [T, B, ...]."""
    return build(cfg, "encoder", partial=True, call=False)


def build_augment(cfg) -> Optional[Callable[..., torch.Tensor]]:
    """The training batches' augmentation as a function (x, generator) -> x; None without one."""
    if cfg.get("augment") is None:
        return None
    return build(cfg, "augment", partial=True, call=False)


def build_optimizer(cfg, params) -> torch.optim.Optimizer:
    opt = build(cfg, "optimizer", list(params), partial=True)
    if not isinstance(opt, torch.optim.Optimizer):
        raise InputError(f"optimizer._target_={cfg.optimizer._target_!r} made a "
                         f"{type(opt).__name__}, not a torch.optim.Optimizer")
    return opt


def build_scheduler(cfg, opt: torch.optim.Optimizer, steps_total: int) -> Optional[Any]:
    """The learning-rate scheduler (None without one), stepped after every batch: keys left
    `???` among STEP_COUNTS get steps_total."""
    if cfg.get("scheduler") is None:
        return None
    keys = list(cfg.scheduler.keys())  # `in` would skip the missing ones
    fill = {k: steps_total for k in STEP_COUNTS
            if k in keys and OmegaConf.is_missing(cfg.scheduler, k)}
    sched_cfg = OmegaConf.merge(cfg.scheduler, fill)
    missing = [k for k in keys if OmegaConf.is_missing(sched_cfg, k)]
    if missing:
        raise InputError(f"scheduler.{missing[0]} is missing (???): give it a value; only "
                         f"{', '.join(STEP_COUNTS)} are filled with the run's optimizer steps")
    holder = OmegaConf.create({"scheduler": sched_cfg,
                               "trusted_modules": cfg.get("trusted_modules", [])})
    return build(holder, "scheduler", opt, partial=True)


def is_spiking(model: torch.nn.Module) -> bool:
    """A model that holds snnTorch neurons (directly or in snn_sweep.nn layers)."""
    import snntorch as snn

    return any(isinstance(m, snn.SpikingNeuron) for m in model.modules())


def name_of(target: str) -> str:
    return str(target).rsplit(".", 1)[-1]


def resolve(cfg):
    """A copy of cfg with model.spiking and the nodes' names filled in, after building the
    model, encoder, augmentation, optimizer and scheduler once and checking what they return
    on a batch of two blank images. Raises InputError (one line, naming the key) on any
    failure."""
    cfg = cfg.copy()
    check_neuron(cfg)
    with open_dict(cfg):
        model = build_model(cfg)
        if model_settings(cfg.model).spiking is None:
            cfg.model.spiking = is_spiking(model)
        for key in ("model", "encoder", "optimizer", "augment", "neuron"):
            if cfg.get(key) is not None and cfg[key].get("name") is None \
                    and isinstance(cfg[key].get("_target_"), str):
                name = name_of(cfg[key]._target_)
                # a neuron is called as the built-in options are: leaky for snntorch.Leaky
                cfg[key].name = name.lower() if key == "neuron" else name
    steps = effective_timesteps(cfg)
    shape = tuple(cfg.data.shape)
    x = torch.zeros(2, *shape)
    frames = cfg.data.get("frames") is not None
    if frames:  # event data: 2 samples of frames [B, T, C, H, W]
        x = torch.zeros(2, frame_count(cfg), *shape)
    k = cfg.data.num_classes
    augment = build_augment(cfg)
    if augment is not None:
        out = _call(lambda images: augment(images, generator=torch.Generator()), x, "augment",
                    cfg.augment._target_)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            raise InputError(f"augment ({cfg.augment._target_}) returned {_shapes(out)} for "
                             f"2 images {list(x.shape)}; it must return their shape")
    model.eval()
    with torch.no_grad():
        if steps is not None:
            seq = _call(build_encoder(cfg), x, "encoder", cfg.encoder._target_, steps)
            want = (steps, 2, *shape)
            if not isinstance(seq, torch.Tensor) or tuple(seq.shape) != want:
                got = tuple(seq.shape) if isinstance(seq, torch.Tensor) else type(seq).__name__
                raise InputError(f"encoder ({cfg.encoder._target_}) returned {got} for "
                                 f"2 images and num_steps={steps}; expected [T, B, C, H, W] = "
                                 f"{list(want)}")
            out = _call(model, seq, "model", cfg.model._target_)
            ok = (isinstance(out, (tuple, list)) and len(out) == 2
                  and all(isinstance(o, torch.Tensor) and tuple(o.shape) == (steps, 2, k)
                          for o in out))
            expected = f"(spk, mem), each [T, B, num_classes] = {[steps, 2, k]}"
        else:
            out = _call(model, frame_counts(x) if frames else x, "model", cfg.model._target_)
            ok = isinstance(out, torch.Tensor) and tuple(out.shape) == (2, k)
            expected = f"logits [B, num_classes] = {[2, k]}"
        if not ok:
            raise InputError(f"model ({cfg.model._target_}) returned {_shapes(out)} for 2 "
                             f"images; a {'spiking' if steps else 'non-spiking'} model must "
                             f"return {expected} (set model.spiking if that was inferred "
                             f"wrongly)")
    opt = build_optimizer(cfg, model.parameters())
    build_scheduler(cfg, opt, 1)
    return cfg


def preflight(cfg):
    """validate, then resolve: every check a run makes before it reads data (the grid
    sweeper makes them for all its jobs before the first trains)."""
    validate(cfg)
    return resolve(cfg)


def _call(fn: Callable, x: torch.Tensor, key: str, target: str,
          steps: Optional[int] = None) -> Any:
    """fn(x) (an encoder: fn(x, num_steps=steps)), any failure one line naming the key."""
    try:
        return fn(x) if steps is None else fn(x, num_steps=steps)
    except Exception as e:
        raise InputError(f"{key} ({target}) failed on input {list(x.shape)}: "
                         f"{type(e).__name__}: {_reason(e)}") from None


def _shapes(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor {list(out.shape)}"
    if isinstance(out, (tuple, list)):
        return "(" + ", ".join(_shapes(o) for o in out) + ")"
    return type(out).__name__


def launch_dir_importable() -> None:
    """The user's modules in the launch folder import by name, also from a console script
    (whose sys.path starts at its own bin folder, not the working directory)."""
    if LAUNCH_DIR not in sys.path and "" not in sys.path:
        sys.path.insert(0, LAUNCH_DIR)
