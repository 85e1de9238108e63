"""The bench's cases, the targets it checks (read from targets.yaml) and each case's config; the
event case's synthetic frames."""
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Tuple

import torch
import yaml
from hydra import compose, initialize_config_dir

import snn_sweep
from snn_sweep.build import resolve
from snn_sweep.config import effective_timesteps, register_configs
from snn_sweep.data import Splits
from snn_sweep.models import conv_out_shape

CONF_DIR = str(Path(snn_sweep.__file__).resolve().parent / "conf")  # the installed package's
TARGETS_FILE = Path(__file__).resolve().with_name("targets.yaml")
BATCH = 128


@dataclass
class Case:
    name: str
    model: str  # snn | snn_single_step | csnn | csnn_bn | ann
    # rate | direct | latency | delta (ignored for the ann); frames: an event case, fed
    # synthetic N-MNIST-shaped frames (event_splits) as they are
    encoder: str
    steps: int  # 0 for the ann
    overrides: Tuple[str, ...] = ()  # further config overrides (dropout, augmentation, ...)
    # A case timed beside this one, ours against ours: the cost of what `overrides` adds
    # (the *_base ratio columns)
    base: Optional[str] = None
    # the tutorial's and the peers' sides (False: ours and base only; an event case keeps the
    # tutorial loop fed its frames, tensor)
    others: bool = True

    @property
    def conv(self) -> bool:
        return self.model in CONV_MODELS

    @property
    def events(self) -> bool:
        return self.encoder == "frames"


CONV_MODELS = ("csnn", "csnn_bn")


# recipe=csnn_bn's neurons: each LIF layer learning its decay from 0.5
CSNN_BN = ("neuron.learn_beta=true", "neuron.beta=0.5")

CASES = {c.name: c for c in [
    *(Case(f"rate{t}", "snn", "rate", t) for t in (1, 10, 25, 50)),
    *(Case(f"direct{t}", "snn", "direct", t) for t in (1, 10, 25, 50)),
    Case("latency25", "snn", "latency", 25),
    Case("delta25", "snn", "delta", 25),
    Case("single_step", "snn_single_step", "direct", 1),
    Case("csnn_rate25", "csnn", "rate", 25),
    Case("csnn_direct8", "csnn", "direct", 8),
    Case("csnn_latency25", "csnn", "latency", 25),
    Case("csnn_delta25", "csnn", "delta", 25),
    Case("ann", "ann", "direct", 0),
    Case("rate25_dropout", "snn", "rate", 25, ("model.dropout=0.5",), base="rate25"),
    # the augmentation's cost: ours with and without it
    Case("rate25_affine", "snn", "rate", 25, ("augment=affine",), base="rate25", others=False),
    # recipe=csnn_bn's network: conv-BN-LIF blocks
    Case("csnn_bn_direct8", "csnn_bn", "direct", 8, CSNN_BN),
    # mixed precision (trainer.precision=bf16): the same net against itself in float32
    Case("csnn_bn_direct8_bf16", "csnn_bn", "direct", 8, (*CSNN_BN, "trainer.precision=bf16"),
         base="csnn_bn_direct8", others=False),
    # event data: the csnn on N-MNIST-shaped frames against the tutorial loop on them (tensor)
    Case("nmnist_csnn10", "csnn", "frames", 10, others=False),
]}
EVENT_DENSITY = 0.03  # an event case's fraction of pixels with an event in a frame
QUICK = ["rate25", "direct25", "csnn_direct8", "ann"]
PEER_NAMES = ("spikingjelly", "norse")
SIDES = ("ours", "ref", "tensor", *PEER_NAMES, "byo", "base")
# ratio column suffix per side compared with ours; "peer" is the fastest peer of each round
RATIO_SUFFIX = {"ref": "", "tensor": "_tensor", **{p: f"_{p}" for p in PEER_NAMES}, "peer": "_peer",
                "byo": "_byo", "base": "_base"}


def load_targets(path: Path = TARGETS_FILE) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


# The targets (targets.yaml): (case, column, minimum) for training; every case's evaluation
# and every csnn case's training against the peers are added in report.verdicts.
_TARGETS = load_targets()


def bounds(entries) -> list:
    """(case, column, ">=" or "<=", bound) for each entry: a `min` or a `max`."""
    return [(t["case"], t["column"], ">=" if "min" in t else "<=",
             float(t.get("min", t.get("max")))) for t in entries]


TARGETS = bounds(_TARGETS["train"])
EVAL_TARGET = float(_TARGETS["eval_ratio_min"])  # eval_ratio and eval_ratio_peer, every case
CSNN_PEER_TARGET = float(_TARGETS["csnn_train_ratio_peer_min"])  # train_ratio_peer, every csnn
# On a CUDA GPU instead: the cuda section's list, and train_ratio_spikingjelly in every case
CUDA_TARGETS = bounds(_TARGETS["cuda"]["train"])
CUDA_SJ_TARGET = float(_TARGETS["cuda"]["spikingjelly_train_ratio_min"])
_MEMORY_STEPS = int(_TARGETS["memory"]["timesteps"])
MEMORY_CASE = Case(f"rate{_MEMORY_STEPS}", "snn", "rate", _MEMORY_STEPS)
MEMORY_LIMIT_MIB = int(_TARGETS["memory"]["peak_rss_mib_max"])


def compose_cfg(case: Case, data_root: str):
    register_configs()
    overrides = [f"model={case.model}", f"data.root={data_root}", "data.download=false",
                 "trainer.progress=false", f"data.batch_size={BATCH}"]
    if case.events:  # N-MNIST's config; the frames are event_splits'
        overrides += ["dataset=nmnist", "encoder=frames", f"timesteps={case.steps}"]
    elif case.model != "ann":
        overrides += [f"encoder={case.encoder}", f"timesteps={case.steps}"]
    with initialize_config_dir(config_dir=CONF_DIR):
        cfg = resolve(compose("config", overrides=overrides + list(case.overrides)))
    if case.model != "ann" and effective_timesteps(cfg) != case.steps:
        raise ValueError(f"case {case.name}: model={case.model} runs "
                         f"{effective_timesteps(cfg)} steps, the case says {case.steps}")
    return cfg


def arch(cfg, in_shape) -> SimpleNamespace:
    """The sizes every side builds from, taken from the config ours is built from; a conv net's
    flattened output size is models.conv_out_shape's, the one its readout layer is built with."""
    c1, c2 = cfg.model.get("channels", (0, 0))  # an MLP has none
    # an MLP's first hidden width; the bench's conv nets (and the peers' twins) have none
    hidden = (cfg.model.get("hidden") or [0])[0]
    k, padding = cfg.model.get("kernel_size", 1), cfg.model.get("padding", 0)
    flat = 0
    if c2:
        # conv_out_shape initializes throwaway conv layers: the global RNG, which seeds the
        # networks built next, is left as it was
        with torch.random.fork_rng(devices=[]):
            flat = math.prod(conv_out_shape((c1, c2), k, tuple(in_shape), padding))
    return SimpleNamespace(inputs=math.prod(in_shape),
                           hidden=hidden,
                           channels=(in_shape[0], c1, c2), k=k, padding=padding,
                           norm=cfg.model.get("norm", False), flat=flat,
                           dropout=cfg.model.get("dropout", 0.0), beta=cfg.neuron.beta,
                           threshold=cfg.neuron.threshold, learn_beta=cfg.neuron.learn_beta)


def event_splits(case: Case, shape, n_train: int = 4 * BATCH, n_test: int = 4 * BATCH,
                 device: torch.device = torch.device("cpu")) -> Splits:
    """Synthetic event frames as an event dataset's Splits hold them: counts [N, T, *shape]
    (the config's data.shape: N-MNIST's), a few % of pixels with an event in each frame (some
    with two), random labels of 10 classes."""
    g = torch.Generator().manual_seed(0)

    def frames(n):
        x = torch.rand(n, case.steps, *shape, generator=g) < EVENT_DENSITY
        twice = torch.rand(x.shape, generator=g) < 0.2
        return (x.to(torch.uint8) + (x & twice).to(torch.uint8)).to(device)

    def labels(n):
        return torch.randint(0, 10, (n,), generator=g).to(device)

    return Splits(frames(n_train), labels(n_train), frames(BATCH), labels(BATCH),
                  frames(n_test), labels(n_test), 10)
