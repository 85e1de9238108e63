"""The value checks a config's types cannot express, each a one-line InputError naming the key and what is allowed."""
import inspect
import os
import types
import typing
from typing import Any, Dict

from omegaconf import OmegaConf

from .config import Readout, model_settings, neuron_key
from .errors import check

METRICS = ("val_acc", "val_loss")  # never the test set
PARETO_METRICS = ("val_energy_pj_per_sample", "val_spikes_per_sample", "val_synops_per_sample",
                  "val_effective_acs_per_sample", "val_effective_macs_per_sample")


def _in_unit(cfg, key: str) -> None:
    v = OmegaConf.select(cfg, key)
    check(0.0 <= v <= 1.0, key, v, "a number in [0, 1]")


def _positive(cfg, key: str) -> None:
    v = OmegaConf.select(cfg, key)
    check(v > 0, key, v, "a number > 0")


def validate(cfg) -> None:
    """Reject values the schema's types cannot rule out, naming the key and what is allowed.
    A user's model, encoder or optimizer checks its own arguments when it is built (build.py);
    here are the built-ins' ranges, by the keys they have."""
    for node in ("model", "encoder", "optimizer"):
        check(isinstance(cfg[node].get("_target_"), str), f"{node}._target_",
               cfg[node].get("_target_"), "a dotted path to a class or function")
    m = model_settings(cfg.model)
    check(cfg.timesteps >= 1, "timesteps", cfg.timesteps, "an integer >= 1")
    check(m.timesteps is None or m.timesteps >= 1,
           "model.timesteps", m.timesteps, "null or an integer >= 1")
    model = cfg.model
    # a user's model may name its own arguments hidden, channels ... with other meanings
    if m._target_.startswith("snn_sweep.models."):
        if "hidden" in model:
            # an MLP needs a hidden layer; a conv net's are optional
            least = 0 if "channels" in model else 1
            check(len(model.hidden) >= least and all(h >= 1 for h in model.hidden),
                   "model.hidden", list(model.hidden),
                   f"a {'non-empty ' if least else ''}list of integers >= 1")
        if "channels" in model:
            check(len(model.channels) == 2 and all(c >= 1 for c in model.channels),
                   "model.channels", list(model.channels), "two integers >= 1")
        if "kernel_size" in model:
            check(model.kernel_size in (3, 5), "model.kernel_size", model.kernel_size,
                   "3 or 5")
            if "padding" in model:
                check(0 <= model.padding <= model.kernel_size // 2, "model.padding",
                       model.padding, f"an integer in [0, {model.kernel_size // 2}] "
                       f"(model.kernel_size // 2)")
        if "dropout" in model:
            check(0.0 <= model.dropout < 1.0, "model.dropout", model.dropout,
                   "a number in [0, 1)")
    check(m.spiking is not False or m.readout == Readout.membrane_ce, "model.readout",
           m.readout.value, "membrane_ce for a non-spiking model")
    neuron = neuron_key(cfg)
    if neuron is not None:
        _validate_neuron(cfg, neuron)
    for key in ("encoder.gain", "encoder.tau", "optimizer.lr"):
        if OmegaConf.select(cfg, key) is not None:
            _positive(cfg, key)
    if cfg.encoder.get("_target_") == "snn_sweep.encoders.delta":
        _positive(cfg, "encoder.threshold")
        check(cfg.encoder.saccade_px >= 0, "encoder.saccade_px", cfg.encoder.saccade_px,
               "an integer >= 0")
    if cfg.get("augment") is not None:
        check(isinstance(cfg.augment.get("_target_"), str), "augment._target_",
               cfg.augment.get("_target_"), "a dotted path to a function")
        if cfg.augment._target_ == "snn_sweep.augment.affine":
            _validate_affine(cfg.augment)
    if "weight_decay" in cfg.optimizer:
        check(cfg.optimizer.weight_decay >= 0, "optimizer.weight_decay",
               cfg.optimizer.weight_decay, "a number >= 0")
    if "momentum" in cfg.optimizer:
        check(0 <= cfg.optimizer.momentum < 1, "optimizer.momentum", cfg.optimizer.momentum,
               "a number in [0, 1)")
    _validate_frames(cfg)
    check(cfg.data.batch_size >= 1, "data.batch_size", cfg.data.batch_size, "an integer >= 1")
    check(cfg.data.eval_batch_size >= 1, "data.eval_batch_size", cfg.data.eval_batch_size,
           "an integer >= 1")
    check(cfg.data.val_size >= 1, "data.val_size", cfg.data.val_size, "an integer >= 1")
    check(cfg.data.train_subset is None or cfg.data.train_subset >= 1, "data.train_subset",
           cfg.data.train_subset, "null or an integer >= 1")
    check(cfg.trainer.epochs >= 1, "trainer.epochs", cfg.trainer.epochs, "an integer >= 1")
    check(cfg.trainer.early_stopping_patience >= 0, "trainer.early_stopping_patience",
           cfg.trainer.early_stopping_patience, "an integer >= 0 (0: off)")
    check(cfg.trainer.threads is None or cfg.trainer.threads >= 1, "trainer.threads",
           cfg.trainer.threads, "null or an integer >= 1")
    for d in cfg.trainer.reuse:
        check(os.path.isdir(d), "trainer.reuse", d, "a list of existing sweep or run dirs")
    check(cfg.trainer.device == "auto" or cfg.trainer.device.split(":")[0] in ("cpu", "cuda", "mps"),
           "trainer.device", cfg.trainer.device, "auto, cpu, cuda, cuda:N or mps")
    check(cfg.optimized_metric in METRICS, "optimized_metric", cfg.optimized_metric,
           f"one of {', '.join(METRICS)}")
    check(cfg.pareto_metric is None or cfg.pareto_metric in PARETO_METRICS, "pareto_metric",
           cfg.pareto_metric, f"null or one of {', '.join(PARETO_METRICS)}")
    check(cfg.repeats >= 1, "repeats", cfg.repeats, "an integer >= 1")
    steps = m.timesteps if m.timesteps is not None else cfg.timesteps
    if m.spiking is not False and m.readout == Readout.count_mse:
        check(steps >= 2, "timesteps", steps, "at least 2 with model.readout=count_mse")


FRAMES_ENCODER = "snn_sweep.encoders.frames"


def _validate_frames(cfg) -> None:
    """Event data (data.frames set) take encoder=frames and no augmentation; encoder=frames
    takes event data; the frames settings' ranges."""
    frames = cfg.data.get("frames")
    encoder = cfg.encoder.get("_target_")
    if frames is None:
        check(encoder != FRAMES_ENCODER, "encoder", cfg.encoder.get("name"),
              f"an image encoder with dataset={cfg.data.name} (encoder=frames takes event "
              "data: dataset=nmnist, dvs_gesture, shd)")
        return
    check(encoder == FRAMES_ENCODER, "encoder", cfg.encoder.get("name"),
          f"frames with dataset={cfg.data.name} (event data are already spikes: "
          "encoder=frames)")
    check(cfg.get("augment") is None, "augment", (cfg.get("augment") or {}).get("name"),
          f"none with dataset={cfg.data.name} (the augmentations are for images)")
    check(frames.time_window is None or frames.time_window > 0, "data.frames.time_window",
          frames.time_window, "null or a number of microseconds > 0")
    check(0 < frames.downsample <= 1, "data.frames.downsample", frames.downsample,
          "a number in (0, 1]")
    check(frames.denoise is None or frames.denoise > 0, "data.frames.denoise", frames.denoise,
          "null or a number of microseconds > 0")
    from .events import frame_shape  # here, not above: Tonic is an optional dependency
    shape = frame_shape(cfg.data)
    check(list(cfg.data.shape) == shape, "data.shape", list(cfg.data.shape),
          f"{shape}, the frames of {cfg.data.name} with data.frames.polarity="
          f"{frames.polarity} and downsample={frames.downsample}")


def _validate_affine(aug) -> None:
    """snn_sweep.augment.affine's arguments, those the node sets (a user's YAML may leave some
    to the function's defaults)."""
    if "degrees" in aug:
        check(aug.degrees >= 0, "augment.degrees", aug.degrees, "a number >= 0")
    if "translate" in aug:
        check(0 <= aug.translate < 1, "augment.translate", aug.translate, "a number in [0, 1)")
    if "scale" in aug:
        scale = list(aug.scale) if OmegaConf.is_list(aug.scale) else aug.scale
        check(isinstance(scale, list) and len(scale) == 2 and 0 < scale[0] <= scale[1],
               "augment.scale", scale, "a pair [lo, hi] with 0 < lo <= hi")


def _validate_neuron(cfg, key: str) -> None:
    """The model's neuron node (at key): a partial of a class or function, and the ranges of
    snnTorch's arguments among those it sets to a number (a user's neuron may set none, or a
    per-neuron list): beta and alpha in [0, 1], threshold > 0, alpha > beta for snn.Alpha."""
    neuron = OmegaConf.select(cfg, key)
    target = neuron.get("_target_")
    check(isinstance(target, str), f"{key}._target_", target,
           "a dotted path to a neuron class (or a function that returns a neuron)")
    check(neuron.get("_partial_") is True, f"{key}._partial_", neuron.get("_partial_"),
           "true: a model makes one neuron per layer from the node")
    number = {k for k in ("beta", "alpha", "threshold")
              if isinstance(neuron.get(k), (int, float)) and not isinstance(neuron[k], bool)}
    for k in ("beta", "alpha"):
        if k in number:
            _in_unit(cfg, f"{key}.{k}")
    if "threshold" in number:
        _positive(cfg, f"{key}.threshold")
    if target == "snntorch.Alpha" and {"alpha", "beta"} <= number:
        check(neuron.alpha > neuron.beta, f"{key}.alpha", neuron.alpha,
               f"snntorch.Alpha needs alpha > {key}.beta ({neuron.beta})")


SIMPLE = (int, float, bool, str)


def _takes(param: inspect.Parameter, hint: Any) -> tuple:
    """The simple types (and None) a constructor's parameter takes, by its type hint, else by
    its default's type; () where it cannot say."""
    if hint is inspect.Parameter.empty or isinstance(hint, str):  # none, or not resolvable
        return (type(param.default),) if type(param.default) in SIMPLE else ()
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if union else (hint,)
    return args if all(a in SIMPLE or a is type(None) for a in args) else ()


def _fits(value: Any, takes: tuple) -> bool:
    if isinstance(value, bool):
        return bool in takes
    if isinstance(value, int):
        return int in takes or float in takes  # an int is fine where a float is asked
    return any(isinstance(value, t) for t in takes)


def check_arguments(key: str, target: Any, spec: Dict[str, Any]) -> None:
    """After target (a dotted path) failed to build from spec: the first argument whose value
    is not of the type its signature takes, as one InputError line (key, value, the type)."""
    from hydra.utils import get_object

    try:
        made = get_object(str(target))
        params = inspect.signature(made).parameters
    except Exception:  # not importable, no signature: the caller's own line says why
        return
    try:  # postponed (string) annotations resolved
        hints = typing.get_type_hints(made.__init__ if inspect.isclass(made) else made)
    except Exception:
        hints = {}
    for name, value in spec.items():
        if name not in params or isinstance(value, (dict, list)):
            continue
        takes = _takes(params[name], hints.get(name, params[name].annotation))
        if takes and not _fits(value, takes):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in takes)
            a = "an" if names[0] in "aeiou" else "a"
            check(False, f"{key}.{name}", value, f"{a} {names} ({target}'s argument {name})")
