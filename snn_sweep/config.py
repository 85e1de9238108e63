"""Config schema: dataclasses registered in Hydra's ConfigStore back the YAML in conf/.

A misspelt key or a wrong type therefore fails at composition; value ranges that a type
cannot express (beta in [0, 1], lr > 0, ...) are checked by `validate` before any work starts.
"""
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException
from omegaconf import MISSING


class InputError(CompactHydraException):
    """Bad user input (config value, path, data file). Hydra prints only the message."""


class Readout(Enum):
    membrane_ce = "membrane_ce"  # cross-entropy on the output membrane at every step
    rate_ce = "rate_ce"  # cross-entropy on output spikes at every step (snntorch ce_rate_loss)
    count_mse = "count_mse"  # MSE on output spike counts (snntorch mse_count_loss)


class Reset(Enum):
    subtract = "subtract"
    zero = "zero"
    none = "none"


@dataclass
class ModelConfig:
    name: str = MISSING
    arch: str = "mlp"  # mlp | conv
    spiking: bool = True
    hidden: List[int] = field(default_factory=lambda: [1000])  # mlp hidden widths
    channels: List[int] = field(default_factory=lambda: [12, 64])  # conv channels
    kernel_size: int = 5
    readout: Readout = Readout.membrane_ce
    # Dropout on every hidden layer's output while training (ReLU activations, or spikes on
    # each step); 0 turns it off.
    dropout: float = 0.0
    # Fixes the number of steps for this model whatever the top-level `timesteps` says
    # (the 1-step SNN baseline); null means use `timesteps`.
    timesteps: Optional[int] = None


@dataclass
class EncoderConfig:
    name: str = MISSING


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
class OptimizerConfig:
    name: str = MISSING  # adam | adamw | sgd
    lr: float = 5e-4
    weight_decay: float = 0.0
    momentum: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: Optional[str] = None  # null (or constant: the same, nameable in a search) | cosine


@dataclass
class DataConfig:
    name: str = "mnist"  # set by the `dataset` group: mnist | fashion_mnist
    root: str = "data"
    download: bool = True
    val_size: int = 5000
    split_seed: int = 0  # the validation split is fixed across training seeds
    train_subset: Optional[int] = None
    batch_size: int = 128
    eval_batch_size: int = 256  # on the CPU also capped at 6400 (timestep x sample) rows


@dataclass
class TrainerConfig:
    epochs: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: Optional[int] = None  # torch intra-op threads; null keeps torch's default
    progress: bool = True  # tqdm bar per epoch
    checkpoint: bool = True
    resume: bool = False  # continue from the run dir's resume.pt (written after every epoch)
    # Stop after this many epochs without a better optimized_metric; 0: train every epoch.
    early_stopping_patience: int = 0


@dataclass
class Config:
    model: Any = MISSING
    encoder: Any = MISSING
    neuron: Any = MISSING
    optimizer: Any = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    timesteps: int = 25
    seed: int = 0
    repeats: int = 1  # seeds per job: seed, seed+1, ...; the job returns their mean
    optimized_metric: str = "val_acc"
    pareto_metric: Optional[str] = None  # the second objective of a two-direction study
    # Set by the `logger` group: {csv: {}, tensorboard: {...}, mlflow: {...}} (snn_sweep/loggers.py)
    logger: Dict[str, Any] = field(default_factory=dict)


MODELS = ("ann", "snn", "snn_single_step", "cnn", "csnn")
ENCODERS = ("rate", "latency", "delta", "direct")
NEURONS = ("leaky", "synaptic", "lapicque", "alpha")
OPTIMIZERS = ("adam", "adamw", "sgd")
DATASETS = ("mnist", "fashion_mnist")
SURROGATES = ("atan", "fast_sigmoid", "sigmoid", "triangular", "straight_through_estimator",
              "spike_rate_escape")
METRICS = ("val_acc", "val_loss")  # never the test set
PARETO_METRICS = ("val_energy_pj_per_sample", "val_spikes_per_sample", "val_synops_per_sample")


def register_configs() -> None:
    cs = ConfigStore.instance()
    # replace=True: the entrypoint and the tests both register, in one process.
    cs.store(name="config_schema", node=Config, replace=True)
    # Kept out of the option groups themselves so `model=...` lists only real options;
    # each option's YAML names its schema: `- /schema/model@_here_: model`.
    for group, name, node in [
        ("model", "model", ModelConfig),
        ("encoder", "rate", RateEncoderConfig),
        ("encoder", "latency", LatencyEncoderConfig),
        ("encoder", "delta", DeltaEncoderConfig),
        ("encoder", "direct", EncoderConfig),
        ("neuron", "neuron", NeuronConfig),
        ("neuron", "synaptic", SynapticNeuronConfig),
        ("optimizer", "optimizer", OptimizerConfig),
    ]:
        cs.store(group=f"schema/{group}", name=name, node=node, replace=True)


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise InputError(f"{key}={value!r} is not allowed: {allowed}")


def _in_unit(cfg, key: str) -> None:
    v = cfg[key.split(".")[0]][key.split(".")[1]]
    _check(0.0 <= v <= 1.0, key, v, "expected a number in [0, 1]")


def validate(cfg) -> None:
    """Reject values the schema's types cannot rule out, naming the key and what is allowed."""
    _check(cfg.model.name in MODELS, "model.name", cfg.model.name, f"one of {', '.join(MODELS)}")
    _check(cfg.model.arch in ("mlp", "conv"), "model.arch", cfg.model.arch, "mlp or conv")
    _check(cfg.timesteps >= 1, "timesteps", cfg.timesteps, "an integer >= 1")
    _check(cfg.model.timesteps is None or cfg.model.timesteps >= 1,
           "model.timesteps", cfg.model.timesteps, "null or an integer >= 1")
    _check(all(h >= 1 for h in cfg.model.hidden) and len(cfg.model.hidden) >= 1,
           "model.hidden", list(cfg.model.hidden), "a non-empty list of integers >= 1")
    _check(len(cfg.model.channels) == 2 and all(c >= 1 for c in cfg.model.channels),
           "model.channels", list(cfg.model.channels), "two integers >= 1")
    _check(cfg.model.kernel_size in (3, 5), "model.kernel_size", cfg.model.kernel_size, "3 or 5")
    _check(0.0 <= cfg.model.dropout < 1.0, "model.dropout", cfg.model.dropout,
           "a number in [0, 1)")
    _check(cfg.model.spiking or cfg.model.readout == Readout.membrane_ce, "model.readout",
           cfg.model.readout.value, "membrane_ce for a non-spiking model")
    _check(cfg.encoder.name in ENCODERS, "encoder.name", cfg.encoder.name,
           f"one of {', '.join(ENCODERS)}")
    _check(cfg.neuron.name in NEURONS, "neuron.name", cfg.neuron.name,
           f"one of {', '.join(NEURONS)}")
    _in_unit(cfg, "neuron.beta")
    if "alpha" in cfg.neuron:
        _in_unit(cfg, "neuron.alpha")
        if cfg.neuron.name == "alpha":
            _check(cfg.neuron.alpha > cfg.neuron.beta, "neuron.alpha", cfg.neuron.alpha,
                   f"the alpha neuron needs alpha > neuron.beta ({cfg.neuron.beta})")
    _check(cfg.neuron.threshold > 0, "neuron.threshold", cfg.neuron.threshold, "a number > 0")
    _check(cfg.neuron.surrogate in SURROGATES, "neuron.surrogate", cfg.neuron.surrogate,
           f"one of {', '.join(SURROGATES)}")
    if cfg.encoder.name == "rate":
        _check(cfg.encoder.gain > 0, "encoder.gain", cfg.encoder.gain, "a number > 0")
    if cfg.encoder.name == "latency":
        _check(cfg.encoder.tau > 0, "encoder.tau", cfg.encoder.tau, "a number > 0")
    if cfg.encoder.name == "delta":
        _check(cfg.encoder.threshold > 0, "encoder.threshold", cfg.encoder.threshold, "a number > 0")
        _check(cfg.encoder.saccade_px >= 0, "encoder.saccade_px", cfg.encoder.saccade_px,
               "an integer >= 0")
    _check(cfg.optimizer.name in OPTIMIZERS, "optimizer.name", cfg.optimizer.name,
           f"one of {', '.join(OPTIMIZERS)}")
    _check(cfg.optimizer.lr > 0, "optimizer.lr", cfg.optimizer.lr, "a number > 0")
    _check(cfg.optimizer.weight_decay >= 0, "optimizer.weight_decay", cfg.optimizer.weight_decay,
           "a number >= 0")
    _check(0 <= cfg.optimizer.momentum < 1, "optimizer.momentum", cfg.optimizer.momentum,
           "a number in [0, 1)")
    _check(cfg.optimizer.scheduler in (None, "constant", "cosine"), "optimizer.scheduler",
           cfg.optimizer.scheduler, "null, constant or cosine")
    _check(cfg.data.name in DATASETS, "data.name", cfg.data.name, f"one of {', '.join(DATASETS)}")
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
    _check(cfg.trainer.device == "auto" or cfg.trainer.device.split(":")[0] in ("cpu", "cuda", "mps"),
           "trainer.device", cfg.trainer.device, "auto, cpu, cuda, cuda:N or mps")
    _check(cfg.optimized_metric in METRICS, "optimized_metric", cfg.optimized_metric,
           f"one of {', '.join(METRICS)}")
    _check(cfg.pareto_metric is None or cfg.pareto_metric in PARETO_METRICS, "pareto_metric",
           cfg.pareto_metric, f"null or one of {', '.join(PARETO_METRICS)}")
    _check(cfg.repeats >= 1, "repeats", cfg.repeats, "an integer >= 1")
    steps = effective_timesteps(cfg)
    if cfg.model.spiking and cfg.model.readout == Readout.count_mse:
        _check(steps >= 2, "timesteps", steps, "at least 2 with model.readout=count_mse")


def effective_timesteps(cfg) -> Optional[int]:
    """Steps the model runs for: None for an ANN, the model's own count when it fixes one."""
    if not cfg.model.spiking:
        return None
    return cfg.model.timesteps if cfg.model.timesteps is not None else cfg.timesteps
