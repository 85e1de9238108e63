"""The config schema: dataclasses in Hydra's ConfigStore behind the YAML in conf/ (defaults written once).

The pipeline's reading of a node's own keys (model_settings, uses_neuron, effective_timesteps)
lives here too.

The dataclasses back the built-in options (a user's own options need none), so a misspelt key
or a wrong type fails at composition; the defaults are written here once. Value ranges that a
type cannot express (beta in [0, 1], lr > 0, ...) are checked by validate.py.
"""
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from .errors import check


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
    # the `neuron` node (${neuron}: a partial, one neuron per layer) for an SNN, null for an ANN
    neuron: Any = None
    # Dropout on every hidden layer's output while training (ReLU activations, or spikes on
    # each step); 0 turns it off.
    dropout: float = 0.0
    # each LIF layer's beta a tensor of its width (models.layer_neuron): with
    # neuron.learn_beta=true one decay learned per neuron, as the SHD papers' LIF layers
    beta_per_neuron: bool = False


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
class SurrogateConfig:
    """A surrogate gradient, a function in snntorch.surrogate (conf/neuron/surrogate/); its
    arguments, none by default (snnTorch's), go beside it: +neuron.spike_grad.alpha=3."""
    _target_: str = MISSING


@dataclass
class NeuronConfig:
    """The arguments of snnTorch's first-order neurons (snntorch.Leaky, snntorch.Lapicque;
    conf/neuron/leaky.yaml, lapicque.yaml): a partial, which a model calls once per layer."""
    _target_: str = MISSING
    _partial_: bool = True
    name: Optional[str] = None  # the pipeline's: the `neuron` group option (or the class name)
    beta: float = 0.95
    threshold: float = 1.0
    reset_mechanism: Reset = Reset.subtract
    learn_beta: bool = False
    learn_threshold: bool = False
    spike_grad: SurrogateConfig = MISSING  # set by the neuron/surrogate group's option


@dataclass
class SynapticNeuronConfig(NeuronConfig):
    """snntorch.Synaptic's and snntorch.Alpha's (conf/neuron/synaptic.yaml, alpha.yaml)."""
    alpha: float = 0.9  # synaptic current decay
    learn_alpha: bool = False


@dataclass
class FramesConfig:
    """Events -> frames (snn_sweep/events.py, Tonic's transforms' definitions): the data.frames
    node of an event dataset (conf/dataset/nmnist.yaml, ...). The number of frames is the
    model's timesteps."""
    # microseconds per frame, frames from the recording's first event; null: each recording
    # cut into `timesteps` equal bins (tonic.transforms.ToFrame n_time_bins)
    time_window: Optional[float] = None
    polarity: bool = True  # ON and OFF events as 2 channels; false: one channel of both
    downsample: float = 1.0  # spatial factor (tonic.transforms.Downsample): 0.25 makes 128 -> 32
    denoise: Optional[float] = None  # tonic.transforms.Denoise's filter_time (us); null: off


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
    # Event data (an event dataset's node sets it): how events become frames; null for images.
    frames: Optional[FramesConfig] = None
    cache: Optional[str] = None  # where event frames are cached; null: <root>/frames_cache
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
    # torch.compile the model for the training step and evaluation (nn.Module.compile, in
    # place): pays for a network stepped in a Python loop (a user's snnTorch net), above all on
    # a GPU; the first batches wait for the compilation.
    compile: bool = False
    # Evaluate the test set at the end: null (auto) does inside a run and skips it in an Optuna
    # trial, whose tuning never looks at it (result.json: test_skipped); true / false always.
    test: Optional[bool] = None


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


# The model node's keys that are the pipeline's, not the constructor's (ModelSettings); the
# neuron node's likewise (NeuronConfig).
MODEL_SETTINGS = ("name", "spiking", "readout", "timesteps")
NEURON_SETTINGS = ("name",)


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


def model_settings(model_cfg) -> ModelSettings:
    """The pipeline's keys of a model node, typed, with ModelSettings' defaults for those it
    leaves out (a user's model YAML may hold only _target_ and its constructor's arguments)."""
    given = {k: model_cfg[k] for k in MODEL_SETTINGS if k in model_cfg}
    if "readout" in given and not isinstance(given["readout"], Readout):
        readouts = [r.value for r in Readout]
        check(given["readout"] in readouts, "model.readout", given["readout"],
              f"one of {', '.join(readouts)}")
        given["readout"] = Readout(given["readout"])
    return ModelSettings(_target_=model_cfg.get("_target_"), **given)


def uses_neuron(cfg) -> bool:
    """Whether the model is built with a neuron node (the built-ins take the `neuron` group's
    as ${neuron}; a user's model may hold its own)."""
    return "neuron" in cfg.model and cfg.model.neuron is not None


def neuron_key(cfg) -> Optional[str]:
    """Where the model's neuron node is, to name it: `neuron` when the model takes the group's
    (${neuron}), `model.neuron` when it holds one of its own, None when it has none."""
    if not uses_neuron(cfg):
        return None
    group = OmegaConf.to_container(cfg.model)["neuron"] == "${neuron}"  # unresolved
    return "neuron" if group else "model.neuron"


def effective_timesteps(cfg) -> Optional[int]:
    """Steps the model runs for: None for an ANN, the model's own count when it fixes one.
    cfg.model.spiking must be known (build.resolve sets it when the config leaves it null)."""
    m = model_settings(cfg.model)
    if not m.spiking:
        return None
    return m.timesteps if m.timesteps is not None else cfg.timesteps


def frame_count(cfg) -> int:
    """Event data's frames per sample: the model's steps; for an ANN `timesteps` (it sees their
    sum: the events of its SNN twin's window)."""
    steps = effective_timesteps(cfg)
    return cfg.timesteps if steps is None else steps
