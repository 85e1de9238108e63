"""The config schema, its defaults, and the value checks a type cannot express.

Dataclasses registered in Hydra's ConfigStore back the YAML in conf/ (the built-in options; a
user's own options need none).

A misspelt key or a wrong type therefore fails at composition; value ranges that a type
cannot express (beta in [0, 1], lr > 0, ...) are checked by `validate` before any work starts.
"""
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException
from omegaconf import MISSING, OmegaConf


class InputError(CompactHydraException):
    """Bad user input (config value, path, data file). Hydra prints only the message."""


class Readout(Enum):
    membrane_ce = "membrane_ce"  # cross-entropy on the output membrane at every step
    rate_ce = "rate_ce"  # cross-entropy on output spikes at every step (snntorch ce_rate_loss)
    count_mse = "count_mse"  # MSE on output spike counts (snntorch mse_count_loss)


class Precision(Enum):
    fp32 = "fp32"  # everything in float32
    # matmuls and convs that PyTorch runs (nn.Linear, nn.Conv2d) in bfloat16 under torch.autocast,
    # their outputs back in float32: weights, optimizer, neuron state and loss stay float32.
    bf16 = "bf16"


class Reset(Enum):
    subtract = "subtract"
    zero = "zero"
    none = "none"


@dataclass
class ModelSettings:
    """What the pipeline reads from the `model` node. Every other key of the node is an argument
    of `_target_`'s constructor, so a model YAML may hold only `_target_` and those."""
    _target_: str = MISSING
    name: Optional[str] = None  # null: the `model` group option (or the class name)
    spiking: Optional[bool] = None  # null: inferred, spiking iff the model holds snnTorch neurons
    readout: Readout = Readout.membrane_ce
    # Fixes the number of steps for this model whatever the top-level `timesteps` says
    # (the 1-step SNN baseline); null means use `timesteps`.
    timesteps: Optional[int] = None


@dataclass
class MLPConfig(ModelSettings):
    """snn_sweep.models.mlp's arguments (conf/model/ann.yaml, snn.yaml, snn_single_step.yaml)."""
    in_shape: List[int] = MISSING
    num_classes: int = MISSING
    hidden: List[int] = MISSING
    neuron: Any = None  # the `neuron` node (${neuron}) for an SNN, null for an ANN
    # Dropout on every hidden layer's output while training (ReLU activations, or spikes on
    # each step); 0 turns it off.
    dropout: float = 0.0


@dataclass
class ConvConfig(ModelSettings):
    """snn_sweep.models.conv_net's arguments (conf/model/cnn.yaml, csnn.yaml)."""
    in_shape: List[int] = MISSING
    num_classes: int = MISSING
    channels: List[int] = MISSING
    kernel_size: int = 5
    neuron: Any = None
    dropout: float = 0.0
    # 2x2 pooling after each conv: max (tutorial 6), or avg / sum (what NIR can express; the
    # conv nets export to NIR with these only, snn_sweep.export)
    pool: str = "max"
    padding: int = 0  # zero padding of each conv (1 keeps a 3x3 conv's size)
    norm: bool = False  # BatchNorm after each conv (conv-BN-LIF blocks)
    # widths of fully connected layers between the convs and the output (LIF or ReLU each)
    hidden: List[int] = field(default_factory=list)


@dataclass
class EncoderConfig:
    """A function (x [B, C, H, W] in [0, 1], num_steps, **args) -> [T, B, C, H, W]; `name`
    is the pipeline's, the other keys are the function's arguments."""
    _target_: str = MISSING
    name: Optional[str] = None  # null: the `encoder` group option (or the function name)


@dataclass
class RateEncoderConfig(EncoderConfig):
    gain: float = 1.0


@dataclass
class LatencyEncoderConfig(EncoderConfig):
    tau: float = 5.0
    threshold: float = 0.01  # pixels darker than this never fire
    linear: bool = True
    normalize: bool = True  # stretch spike times over the whole window


@dataclass
class DeltaEncoderConfig(EncoderConfig):
    threshold: float = 0.1
    off_spike: bool = True  # emit -1 where the intensity falls
    saccade_px: int = 1  # size of the moving presentation's shifts


@dataclass
class AugmentConfig:
    """A function (x [B, C, H, W] in [0, 1], generator, **args) -> x transformed, applied to
    training batches only; `name` is the pipeline's, the other keys are the function's
    arguments."""
    _target_: str = MISSING
    name: Optional[str] = None  # null: the function name


@dataclass
class AffineAugmentConfig(AugmentConfig):
    """snn_sweep.augment.affine: a random rotation, shift and scale per sample."""
    degrees: float = 30.0  # rotation angle in [-degrees, degrees]
    translate: float = 0.15  # shift up to this fraction of the width / height
    scale: List[float] = field(default_factory=lambda: [0.85, 1.11])  # [lo, hi]


@dataclass
class NeuronConfig:
    name: str = MISSING
    beta: float = 0.95
    threshold: float = 1.0
    reset_mechanism: Reset = Reset.subtract
    learn_beta: bool = False
    learn_threshold: bool = False
    surrogate: str = "atan"  # a function in snntorch.surrogate, see SURROGATES
    surrogate_args: Dict[str, float] = field(default_factory=dict)


@dataclass
class SynapticNeuronConfig(NeuronConfig):
    alpha: float = 0.9  # synaptic current decay
    learn_alpha: bool = False


@dataclass
class DataConfig:
    # Set by the `dataset` group (conf/dataset/): its name; a torchvision-style dataset class,
    # called (root=, train=, download=), whose instance has .data (uint8 [N, H, W]), .targets
    # and .classes; one image's [C, H, W]; the number of classes.
    name: str = MISSING
    dataset: Any = MISSING
    shape: List[int] = MISSING
    num_classes: int = MISSING
    root: str = "data"  # torchvision layout: <root>/MNIST/raw/...
    download: bool = True
    val_size: int = 5000  # held out of the training set; model selection and tuning use it
    split_seed: int = 0  # the validation split is fixed across training seeds
    train_subset: Optional[int] = None  # cap on training images, for quick runs
    batch_size: int = 128
    eval_batch_size: int = 256  # on the CPU also capped at runner.EVAL_ROWS (step x sample) rows


@dataclass
class TrainerConfig:
    epochs: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: Optional[int] = None  # torch intra-op threads; null keeps torch's default
    progress: bool = True  # tqdm bar per epoch
    checkpoint: bool = True
    # Continue a killed run from its run dir's resume.pt (written after every epoch): name the
    # dir, hydra.run.dir=<its run dir> (a sweep: hydra.sweep.dir=<its sweep dir>).
    resume: bool = False
    # Sweep or run dirs whose completed run of the same config (rundir.config_sha) stands in for
    # this one: its files are copied into this run dir instead of training it again, e.g. the
    # augmentation stage's seed-0 runs in the comparison (Makefile).
    reuse: List[str] = field(default_factory=list)
    # Stop after this many epochs without a better optimized_metric; 0: train every epoch.
    early_stopping_patience: int = 0
    precision: Precision = Precision.fp32  # bf16: mixed precision (docs/performance.md)


@dataclass
class Config:
    model: Any = MISSING
    encoder: Any = MISSING
    neuron: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None  # a torch.optim.lr_scheduler class, stepped after every batch
    augment: Any = None  # training batches' augmentation (snn_sweep/augment.py); null: none
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    timesteps: int = 25
    seed: int = 0
    repeats: int = 1  # seeds per job: seed, seed+1, ...; the job returns their mean
    optimized_metric: str = "val_acc"
    pareto_metric: Optional[str] = None  # the second objective of a two-direction study
    # Set by the `logger` group: {csv: {}, tensorboard: {...}, mlflow: {...}} (snn_sweep/loggers.py)
    logger: Dict[str, Any] = field(default_factory=dict)
    # Module prefixes whose _target_s a config may name, besides TRUSTED and the modules in the
    # folder a run is launched from (build.py).
    trusted_modules: List[str] = field(default_factory=list)


NEURONS = ("leaky", "synaptic", "lapicque", "alpha")  # the built-in models' snnTorch neurons
SURROGATES = ("atan", "fast_sigmoid", "sigmoid", "triangular", "straight_through_estimator",
              "spike_rate_escape")
METRICS = ("val_acc", "val_loss")  # never the test set
PARETO_METRICS = ("val_energy_pj_per_sample", "val_spikes_per_sample", "val_synops_per_sample")
# The model node's keys that are the pipeline's, not the constructor's (ModelSettings).
MODEL_SETTINGS = ("name", "spiking", "readout", "timesteps")


def register_configs() -> None:
    cs = ConfigStore.instance()
    # replace=True: the entrypoint and the tests both register, in one process.
    cs.store(name="config_schema", node=Config, replace=True)
    # Kept out of the option groups themselves so `model=...` lists only real options;
    # each option's YAML names its schema: `- /schema/model@_here_: mlp`.
    for group, name, node in [
        ("model", "settings", ModelSettings),
        ("model", "mlp", MLPConfig),
        ("model", "conv", ConvConfig),
        ("encoder", "encoder", EncoderConfig),
        ("encoder", "rate", RateEncoderConfig),
        ("encoder", "latency", LatencyEncoderConfig),
        ("encoder", "delta", DeltaEncoderConfig),
        ("augment", "augment", AugmentConfig),
        ("augment", "affine", AffineAugmentConfig),
        ("neuron", "neuron", NeuronConfig),
        ("neuron", "synaptic", SynapticNeuronConfig),
    ]:
        cs.store(group=f"schema/{group}", name=name, node=node, replace=True)


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise InputError(f"{key}={value!r} is not allowed: {allowed}")


def _in_unit(cfg, key: str) -> None:
    v = OmegaConf.select(cfg, key)
    _check(0.0 <= v <= 1.0, key, v, "a number in [0, 1]")


def _positive(cfg, key: str) -> None:
    v = OmegaConf.select(cfg, key)
    _check(v > 0, key, v, "a number > 0")


def model_settings(model_cfg) -> ModelSettings:
    """The pipeline's keys of a model node, typed, with ModelSettings' defaults for those it
    leaves out (a user's model YAML may hold only _target_ and its constructor's arguments)."""
    given = {k: model_cfg[k] for k in MODEL_SETTINGS if k in model_cfg}
    if "readout" in given and not isinstance(given["readout"], Readout):
        readouts = [r.value for r in Readout]
        _check(given["readout"] in readouts, "model.readout", given["readout"],
               f"one of {', '.join(readouts)}")
        given["readout"] = Readout(given["readout"])
    return ModelSettings(_target_=model_cfg.get("_target_"), **given)


def uses_neuron(cfg) -> bool:
    """Whether the model is built from the `neuron` group (the built-ins pass it as ${neuron})."""
    return "neuron" in cfg.model and cfg.model.neuron is not None


def validate(cfg) -> None:
    """Reject values the schema's types cannot rule out, naming the key and what is allowed.
    A user's model, encoder or optimizer checks its own arguments when it is built (build.py);
    here are the built-ins' ranges, by the keys they have."""
    for node in ("model", "encoder", "optimizer"):
        _check(isinstance(cfg[node].get("_target_"), str), f"{node}._target_",
               cfg[node].get("_target_"), "a dotted path to a class or function")
    m = model_settings(cfg.model)
    _check(cfg.timesteps >= 1, "timesteps", cfg.timesteps, "an integer >= 1")
    _check(m.timesteps is None or m.timesteps >= 1,
           "model.timesteps", m.timesteps, "null or an integer >= 1")
    model = cfg.model
    # a user's model may name its own arguments hidden, channels ... with other meanings
    if m._target_.startswith("snn_sweep.models."):
        if "hidden" in model:
            # an MLP needs a hidden layer; a conv net's are optional
            least = 0 if "channels" in model else 1
            _check(len(model.hidden) >= least and all(h >= 1 for h in model.hidden),
                   "model.hidden", list(model.hidden),
                   f"a {'non-empty ' if least else ''}list of integers >= 1")
        if "channels" in model:
            _check(len(model.channels) == 2 and all(c >= 1 for c in model.channels),
                   "model.channels", list(model.channels), "two integers >= 1")
        if "kernel_size" in model:
            _check(model.kernel_size in (3, 5), "model.kernel_size", model.kernel_size,
                   "3 or 5")
            if "padding" in model:
                _check(0 <= model.padding <= model.kernel_size // 2, "model.padding",
                       model.padding, f"an integer in [0, {model.kernel_size // 2}] "
                       f"(model.kernel_size // 2)")
        if "dropout" in model:
            _check(0.0 <= model.dropout < 1.0, "model.dropout", model.dropout,
                   "a number in [0, 1)")
    _check(m.spiking is not False or m.readout == Readout.membrane_ce, "model.readout",
           m.readout.value, "membrane_ce for a non-spiking model")
    if uses_neuron(cfg):
        _check(cfg.neuron.name in NEURONS, "neuron.name", cfg.neuron.name,
               f"one of {', '.join(NEURONS)}")
        _in_unit(cfg, "neuron.beta")
        if "alpha" in cfg.neuron:
            _in_unit(cfg, "neuron.alpha")
            if cfg.neuron.name == "alpha":
                _check(cfg.neuron.alpha > cfg.neuron.beta, "neuron.alpha", cfg.neuron.alpha,
                       f"the alpha neuron needs alpha > neuron.beta ({cfg.neuron.beta})")
        _positive(cfg, "neuron.threshold")
        _check(cfg.neuron.surrogate in SURROGATES, "neuron.surrogate", cfg.neuron.surrogate,
               f"one of {', '.join(SURROGATES)}")
    for key in ("encoder.gain", "encoder.tau", "optimizer.lr"):
        if OmegaConf.select(cfg, key) is not None:
            _positive(cfg, key)
    if cfg.encoder.get("_target_") == "snn_sweep.encoders.delta":
        _positive(cfg, "encoder.threshold")
        _check(cfg.encoder.saccade_px >= 0, "encoder.saccade_px", cfg.encoder.saccade_px,
               "an integer >= 0")
    if cfg.get("augment") is not None:
        _check(isinstance(cfg.augment.get("_target_"), str), "augment._target_",
               cfg.augment.get("_target_"), "a dotted path to a function")
        if cfg.augment._target_ == "snn_sweep.augment.affine":
            _validate_affine(cfg.augment)
    if "weight_decay" in cfg.optimizer:
        _check(cfg.optimizer.weight_decay >= 0, "optimizer.weight_decay",
               cfg.optimizer.weight_decay, "a number >= 0")
    if "momentum" in cfg.optimizer:
        _check(0 <= cfg.optimizer.momentum < 1, "optimizer.momentum", cfg.optimizer.momentum,
               "a number in [0, 1)")
    _check(cfg.data.batch_size >= 1, "data.batch_size", cfg.data.batch_size, "an integer >= 1")
    _check(cfg.data.eval_batch_size >= 1, "data.eval_batch_size", cfg.data.eval_batch_size,
           "an integer >= 1")
    _check(cfg.data.val_size >= 1, "data.val_size", cfg.data.val_size, "an integer >= 1")
    _check(cfg.data.train_subset is None or cfg.data.train_subset >= 1, "data.train_subset",
           cfg.data.train_subset, "null or an integer >= 1")
    _check(cfg.trainer.epochs >= 1, "trainer.epochs", cfg.trainer.epochs, "an integer >= 1")
    _check(cfg.trainer.early_stopping_patience >= 0, "trainer.early_stopping_patience",
           cfg.trainer.early_stopping_patience, "an integer >= 0 (0: off)")
    _check(cfg.trainer.threads is None or cfg.trainer.threads >= 1, "trainer.threads",
           cfg.trainer.threads, "null or an integer >= 1")
    for d in cfg.trainer.reuse:
        _check(os.path.isdir(d), "trainer.reuse", d, "a list of existing sweep or run dirs")
    _check(cfg.trainer.device == "auto" or cfg.trainer.device.split(":")[0] in ("cpu", "cuda", "mps"),
           "trainer.device", cfg.trainer.device, "auto, cpu, cuda, cuda:N or mps")
    _check(cfg.optimized_metric in METRICS, "optimized_metric", cfg.optimized_metric,
           f"one of {', '.join(METRICS)}")
    _check(cfg.pareto_metric is None or cfg.pareto_metric in PARETO_METRICS, "pareto_metric",
           cfg.pareto_metric, f"null or one of {', '.join(PARETO_METRICS)}")
    _check(cfg.repeats >= 1, "repeats", cfg.repeats, "an integer >= 1")
    steps = m.timesteps if m.timesteps is not None else cfg.timesteps
    if m.spiking is not False and m.readout == Readout.count_mse:
        _check(steps >= 2, "timesteps", steps, "at least 2 with model.readout=count_mse")


def _validate_affine(aug) -> None:
    """snn_sweep.augment.affine's arguments, those the node sets (a user's YAML may leave some
    to the function's defaults)."""
    if "degrees" in aug:
        _check(aug.degrees >= 0, "augment.degrees", aug.degrees, "a number >= 0")
    if "translate" in aug:
        _check(0 <= aug.translate < 1, "augment.translate", aug.translate, "a number in [0, 1)")
    if "scale" in aug:
        scale = list(aug.scale) if OmegaConf.is_list(aug.scale) else aug.scale
        _check(isinstance(scale, list) and len(scale) == 2 and 0 < scale[0] <= scale[1],
               "augment.scale", scale, "a pair [lo, hi] with 0 < lo <= hi")


def effective_timesteps(cfg) -> Optional[int]:
    """Steps the model runs for: None for an ANN, the model's own count when it fixes one.
    cfg.model.spiking must be known (build.resolve sets it when the config leaves it null)."""
    m = model_settings(cfg.model)
    if not m.spiking:
        return None
    return m.timesteps if m.timesteps is not None else cfg.timesteps
