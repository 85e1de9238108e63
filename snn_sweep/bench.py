"""Throughput and memory of this project's models against tutorial-style snnTorch loops and
other SNN libraries, on this machine.

    python -m snn_sweep.bench [--data-root ../shared/data] [--cases rate25,csnn_direct8] [--quick]

Every case trains and evaluates the same network (784-1000-10 MLP, or tutorial 6's
12C5-MP2-64C5-MP2-10 conv SNN; LIF with beta 0.95, threshold 1, subtract reset) with Adam at
the config's learning rate, batch 128, in up to six ways:

- ours: built through the training code path (config composition, build.py's model, encoder
  and optimizer, readout_loss, Runner.evaluate), fed the in-memory MNIST tensors;
- ref: what snnTorch tutorials 5 and 6 teach, what users write: a DataLoader over torchvision
  MNIST with a per-sample transform, spikegen per batch, a Python loop over timesteps calling
  layer -> snn.Leaky, the CE loss on the membrane summed over steps;
- tensor: the same tutorial loop fed the same tensors as ours (no DataLoader), so that
  ours / tensor measures the SNN machinery alone;
- spikingjelly, norse (when importable, `pip install -e ".[bench]"`): the same networks in each
  library's own idiom, fed the same spike trains as `tensor`;
- byo (spiking cases): the same network written by a user from snn_sweep.nn's layers, trained
  by the same calls as ours.

Timings alternate between the sides in rounds within one process, so that load on the machine
hits all of them; each round is timed separately and a ratio is the median of the per-round
ratios. The bench also measures this machine's fp32 matmul peak and reports the fraction of it
our training reaches (dense FLOPs). Peak memory is the peak RSS of a fresh subprocess per side
(it is process-wide).
"""
import argparse
import importlib
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Tuple

import snntorch as snn
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from snntorch import spikegen
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from . import encoders
from . import nn as fast
from . import train as train_module
from .build import build_model, build_optimizer, resolve
from .config import InputError, effective_timesteps, register_configs
from .data import load_splits
from .models import readout_loss
from .rundir import write_csv
from .runner import Runner, keep_freed_memory

CONF_DIR = str(Path(__file__).resolve().parent / "conf")
BATCH = 128


@dataclass
class Case:
    name: str
    model: str  # snn | snn_single_step | csnn | ann
    encoder: str  # rate | direct | latency | delta (ignored for the ann)
    steps: int  # 0 for the ann

    @property
    def conv(self) -> bool:
        return self.model == "csnn"


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
]}
QUICK = ["rate25", "direct25", "csnn_direct8", "ann"]
# (case, column, minimum): issue 4's targets against the DataLoader tutorial, then the peer and
# tensor-fed targets; every case's evaluation and every csnn case's training are added in
# `verdicts`.
TARGETS = [("rate25", "train_ratio", 3.0), ("direct25", "train_ratio", 10.0),
           ("rate25", "train_ratio_peer", 2.5), ("direct25", "train_ratio_peer", 10.0),
           ("csnn_rate25", "train_ratio_tensor", 4.0), ("csnn_direct8", "train_ratio_tensor", 4.0)]
EVAL_TARGET = 3.0  # eval_ratio (DataLoader tutorial) and eval_ratio_peer, every case
CSNN_PEER_TARGET = 3.0  # train_ratio_peer, every csnn case
MEMORY_CASE = Case("rate100", "snn", "rate", 100)
MEMORY_LIMIT_MIB = 2048
PEAK_REPEATS = 5  # torch.mm calls per peak measurement
PEER_NAMES = ("spikingjelly", "norse")
SIDES = ("ours", "ref", "tensor", *PEER_NAMES, "byo")
# ratio column suffix per side compared with ours; "peer" is the fastest peer of each round
RATIO_SUFFIX = {"ref": "", "tensor": "_tensor", **{p: f"_{p}" for p in PEER_NAMES}, "peer": "_peer",
                "byo": "_byo"}


def compose_cfg(case: Case, data_root: str):
    register_configs()
    overrides = [f"model={case.model}", f"data.root={data_root}", "data.download=false",
                 "trainer.progress=false", f"data.batch_size={BATCH}"]
    if case.model != "ann":
        overrides += [f"encoder={case.encoder}", f"timesteps={case.steps}"]
    with initialize_config_dir(config_dir=CONF_DIR):
        cfg = resolve(compose("config", overrides=overrides))
    if case.model != "ann" and effective_timesteps(cfg) != case.steps:
        raise ValueError(f"case {case.name}: model={case.model} runs "
                         f"{effective_timesteps(cfg)} steps, the case says {case.steps}")
    return cfg


def spike_trains(case: Case, enc, images: torch.Tensor) -> torch.Tensor:
    """images [B, C, H, W] -> [T, B, C, H, W] as a tutorial user encodes them, per batch, for
    every side but ours. snnTorch has no saccade for delta coding: that one is ours (the same
    transform as conf/encoder/delta.yaml)."""
    t = case.steps
    if case.encoder == "rate":
        return spikegen.rate(images, num_steps=t, gain=enc.gain)
    if case.encoder == "latency":
        return spikegen.latency(images, num_steps=t, tau=enc.tau, threshold=enc.threshold,
                                linear=enc.linear, normalize=enc.normalize, clip=True)
    if case.encoder == "delta":
        return encoders.delta(images, t, threshold=enc.threshold, off_spike=enc.off_spike,
                              saccade_px=enc.saccade_px)
    return images.unsqueeze(0).repeat(t, 1, 1, 1, 1)  # tutorial 5 feeds the image every step


def per_step_ce(mem: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Tutorial 5's loss: cross-entropy on the output membrane, summed over steps."""
    loss = torch.zeros(1)
    for step in range(mem.shape[0]):
        loss += F.cross_entropy(mem[step], targets)
    return loss


def arch(cfg, in_shape) -> SimpleNamespace:
    """The sizes every side builds from, taken from the config ours is built from."""
    c1, c2 = cfg.model.get("channels", (0, 0))  # an MLP has none, a conv net no hidden widths
    k = cfg.model.get("kernel_size", 1)
    side = ((in_shape[1] - k + 1) // 2 - k + 1) // 2  # two (conv k, no padding) -> pool 2
    return SimpleNamespace(inputs=in_shape[0] * in_shape[1] * in_shape[2],
                           hidden=cfg.model.get("hidden", [0])[0],
                           channels=(in_shape[0], c1, c2), k=k,
                           flat=c2 * side * side, beta=cfg.neuron.beta,
                           threshold=cfg.neuron.threshold)


# ---------------------------------------------------------------- the tutorial-style networks
class TutorialNet(nn.Module):
    """snnTorch tutorial 5's network: layers called once per step in a Python loop."""

    def __init__(self, steps: int, a: SimpleNamespace):
        super().__init__()
        self.steps = steps
        self.fc1 = nn.Linear(a.inputs, a.hidden)
        self.lif1 = snn.Leaky(beta=a.beta, threshold=a.threshold)
        self.fc2 = nn.Linear(a.hidden, 10)
        self.lif2 = snn.Leaky(beta=a.beta, threshold=a.threshold)

    def forward(self, x):  # x [T, B, ...]
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for step in range(self.steps):
            cur1 = self.fc1(x[step].flatten(1))
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


class TutorialConvNet(nn.Module):
    """snnTorch tutorial 6's network (12C5-MP2-64C5-MP2-10), stepped in a Python loop."""

    def __init__(self, steps: int, a: SimpleNamespace):
        super().__init__()
        self.steps = steps
        c0, c1, c2 = a.channels
        self.conv1 = nn.Conv2d(c0, c1, a.k)
        self.lif1 = snn.Leaky(beta=a.beta, threshold=a.threshold)
        self.conv2 = nn.Conv2d(c1, c2, a.k)
        self.lif2 = snn.Leaky(beta=a.beta, threshold=a.threshold)
        self.fc1 = nn.Linear(a.flat, 10)
        self.lif3 = snn.Leaky(beta=a.beta, threshold=a.threshold)

    def forward(self, x):  # x [T, B, C, H, W]
        mem1, mem2, mem3 = (n.init_leaky() for n in (self.lif1, self.lif2, self.lif3))
        spk3_rec, mem3_rec = [], []
        for step in range(self.steps):
            cur1 = F.max_pool2d(self.conv1(x[step]), 2)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = F.max_pool2d(self.conv2(spk1), 2)
            spk2, mem2 = self.lif2(cur2, mem2)
            cur3 = self.fc1(spk2.flatten(1))
            spk3, mem3 = self.lif3(cur3, mem3)
            spk3_rec.append(spk3)
            mem3_rec.append(mem3)
        return torch.stack(spk3_rec, dim=0), torch.stack(mem3_rec, dim=0)


def tutorial_net(case: Case, a: SimpleNamespace) -> nn.Module:
    if case.model == "ann":
        return nn.Sequential(nn.Flatten(), nn.Linear(a.inputs, a.hidden), nn.ReLU(),
                             nn.Linear(a.hidden, 10))
    return (TutorialConvNet if case.conv else TutorialNet)(case.steps, a)


def tutorial_adam(cfg, net: nn.Module):
    """Adam as the tutorials construct it (torch's default implementation)."""
    return torch.optim.Adam(net.parameters(), lr=cfg.optimizer.lr,
                            betas=tuple(cfg.optimizer.betas))


class Reference:
    """Training and evaluation as the tutorials write them, DataLoader included."""

    def __init__(self, case: Case, cfg, data_root: str):
        tf = transforms.Compose([transforms.Resize((28, 28)), transforms.Grayscale(),
                                 transforms.ToTensor(), transforms.Normalize((0,), (1,))])
        self.case, self.enc = case, cfg.encoder
        self.train_loader = DataLoader(datasets.MNIST(data_root, train=True, transform=tf),
                                       batch_size=BATCH, shuffle=True, drop_last=True)
        self.test_loader = DataLoader(datasets.MNIST(data_root, train=False, transform=tf),
                                      batch_size=BATCH, shuffle=True, drop_last=True)
        self.train_iter = iter(self.train_loader)
        self.test_iter = iter(self.test_loader)
        self.net = tutorial_net(case, arch(cfg, (1, 28, 28)))
        self.opt = tutorial_adam(cfg, self.net)
        self.loss = nn.CrossEntropyLoss()

    def encode(self, data):
        return spike_trains(self.case, self.enc, data)

    @staticmethod
    def _next(loader, it):
        try:
            return it, next(it)
        except StopIteration:
            it = iter(loader)
            return it, next(it)

    def train_batch(self) -> int:
        self.train_iter, (data, targets) = self._next(self.train_loader, self.train_iter)
        self.net.train()
        if self.case.model == "ann":
            loss_val = self.loss(self.net(data), targets)
        else:
            _, mem_rec = self.net(self.encode(data))
            loss_val = torch.zeros(1)
            for step in range(self.case.steps):
                loss_val += self.loss(mem_rec[step], targets)
        self.opt.zero_grad()
        loss_val.backward()
        self.opt.step()
        return len(targets)

    @torch.no_grad()
    def eval_batch(self, data=None, targets=None):
        if data is None:
            self.test_iter, (data, targets) = self._next(self.test_loader, self.test_iter)
        self.net.eval()
        if self.case.model == "ann":
            predicted = self.net(data).argmax(1)
        else:
            spk_rec, _ = self.net(self.encode(data))
            predicted = spk_rec.sum(dim=0).argmax(1)  # tutorial 5: spike counts
        return len(targets), int((predicted == targets).sum())

    def evaluate(self, n: int) -> int:
        """About n test samples in the tutorial's batches of 128."""
        return sum(self.eval_batch()[0] for _ in range(max(1, n // BATCH)))


# ------------------------------------------------------------- sides fed the same tensors
def eval_batch_size(cfg) -> int:
    """Runner.evaluate's batch on the CPU: the tensor-fed sides evaluate in the same batches."""
    steps = effective_timesteps(cfg)
    rows = getattr(train_module, "EVAL_ROWS", 6400)
    return max(1, min(cfg.data.eval_batch_size, rows // steps)) if steps else \
        cfg.data.eval_batch_size


class TensorFed:
    """Batches drawn from the same in-memory tensors as ours, encoded per batch with spikegen;
    a subclass builds `net` and says how it runs a sequence (`forward`: [T, B, ...] -> output
    membrane [T, B, K])."""

    def __init__(self, case: Case, cfg, data):
        self.case, self.enc, self.data = case, cfg.encoder, data
        self.eval_bs = eval_batch_size(cfg)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.perm = torch.randperm(len(data.train_x), generator=self.gen)
        self.pos = 0
        self.arch = arch(cfg, tuple(data.train_x.shape[1:]))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def after_batch(self) -> None:
        """Clear the network's state between batches (if the library keeps one)."""

    def run(self, images: torch.Tensor) -> torch.Tensor:
        if self.case.model == "ann":
            return self.net(images).unsqueeze(0)
        return self.forward(spike_trains(self.case, self.enc, images))

    def train_batch(self) -> int:
        if self.pos + BATCH > len(self.perm):
            self.perm, self.pos = torch.randperm(len(self.perm), generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + BATCH]
        self.pos += BATCH
        y = self.data.train_y[idx]
        self.net.train()
        loss = per_step_ce(self.run(self.data.train_x[idx]), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.after_batch()
        return len(y)

    @torch.no_grad()
    def evaluate(self, n: int) -> int:
        self.net.eval()
        for i in range(0, n, self.eval_bs):
            mem = self.run(self.data.test_x[i:min(n, i + self.eval_bs)])
            mem.mean(0).argmax(-1)  # the prediction, as ours reads it
            self.after_batch()
        return n


class TensorTutorial(TensorFed):
    """The tutorial loop (the same network, loss and Adam as `Reference`) without a DataLoader."""

    def __init__(self, case: Case, cfg, data):
        super().__init__(case, cfg, data)
        self.net = tutorial_net(case, self.arch)
        self.opt = tutorial_adam(cfg, self.net)

    def forward(self, x_seq):
        return self.net(x_seq)[1]


# ------------------------------------------------------------------------------ the peers
def load_spikingjelly():
    return SimpleNamespace(**{m: importlib.import_module(f"spikingjelly.activation_based.{m}")
                              for m in ("neuron", "layer", "functional", "surrogate")})


def load_norse():
    with warnings.catch_warnings():  # Norse's import calls the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        return importlib.import_module("norse.torch")


class SpikingJellyPeer(TensorFed):
    """SpikingJelly 2's own idiom: `activation_based` layers and LIFNode in multi-step mode
    (each layer takes the whole [T, B, ...] sequence; LIFNode runs its fused CPU/CUDA kernel),
    the output membrane from the last LIFNode's v_seq, functional.reset_net after each batch.

    LIFNode with decay_input=False and v_reset=None charges H = V - V / tau + X, so tau =
    1 / (1 - beta) gives snnTorch's V * beta + X with the input unscaled; v_reset=None is the
    soft (subtract) reset, detach_reset=True detaches it as snnTorch does, and ATan(alpha=2)
    is snnTorch's default surrogate. What differs: SpikingJelly subtracts the threshold in the
    step the spike fires and its v_seq is the membrane after that reset (snnTorch subtracts it
    one step later, undecayed, and returns the membrane before it), and it fires at
    H >= threshold (snnTorch at mem > threshold)."""

    def __init__(self, case: Case, cfg, data, sj):
        super().__init__(case, cfg, data)
        self.sj, a, m = sj, self.arch, "m"

        def lif(readout: bool = False):
            return sj.neuron.LIFNode(tau=1.0 / (1.0 - a.beta), decay_input=False,
                                     v_threshold=a.threshold, v_reset=None,
                                     surrogate_function=sj.surrogate.ATan(alpha=2.0),
                                     detach_reset=True, step_mode=m, store_v_seq=readout)

        L = sj.layer
        if case.conv:
            c0, c1, c2 = a.channels
            self.net = nn.Sequential(
                L.Conv2d(c0, c1, a.k, step_mode=m), L.MaxPool2d(2, step_mode=m), lif(),
                L.Conv2d(c1, c2, a.k, step_mode=m), L.MaxPool2d(2, step_mode=m), lif(),
                L.Flatten(step_mode=m), L.Linear(a.flat, 10, step_mode=m), lif(readout=True))
        else:
            self.net = nn.Sequential(
                L.Flatten(step_mode=m), L.Linear(a.inputs, a.hidden, step_mode=m), lif(),
                L.Linear(a.hidden, 10, step_mode=m), lif(readout=True))
        self.opt = tutorial_adam(cfg, self.net)

    def forward(self, x_seq):
        self.net(x_seq)
        return self.net[-1].v_seq

    def after_batch(self):
        self.sj.functional.reset_net(self.net)


class NorsePeer(TensorFed):
    """Norse 1.1's own idiom: torch layers and LIFBoxCell in a SequentialState, stepped over
    time with its state list (Norse has no sequence module for the box LIF); the output
    membrane is the last cell's state.v.

    LIFBoxCell takes one Euler step of dv/dt = tau_mem_inv * (v_leak - v + i) per call:
    v' = v + dt * tau_mem_inv * (i - v) = (1 - dt * tau_mem_inv) * v + dt * tau_mem_inv * i
    (v_leak = 0). A decay of beta per step needs dt * tau_mem_inv = 1 - beta, so tau_mem_inv =
    (1 - beta) / dt (with Norse's default dt = 1e-3: 50 per second for beta 0.95).
    reset_subtract gives the subtract reset. What differs from snnTorch: the input enters
    scaled by dt * tau_mem_inv = 1 - beta (the weights learn the scale), the reset is applied in
    the spike's own step and state.v is the membrane after it, the reset is not detached, and
    the surrogate is Norse's default SuperSpike (alpha 100; Norse has no ATan)."""

    DT = 1e-3  # LIFBoxCell's default

    def __init__(self, case: Case, cfg, data, norse):
        super().__init__(case, cfg, data)
        a = self.arch
        p = norse.LIFBoxParameters(tau_mem_inv=torch.as_tensor((1.0 - a.beta) / self.DT),
                                   v_th=torch.as_tensor(a.threshold),
                                   reset_method=norse.reset_subtract)

        def lif():
            return norse.LIFBoxCell(p, dt=self.DT)

        if case.conv:
            c0, c1, c2 = a.channels
            self.net = norse.SequentialState(
                nn.Conv2d(c0, c1, a.k), nn.MaxPool2d(2), lif(),
                nn.Conv2d(c1, c2, a.k), nn.MaxPool2d(2), lif(),
                nn.Flatten(), nn.Linear(a.flat, 10), lif())
        else:
            self.net = norse.SequentialState(nn.Flatten(), nn.Linear(a.inputs, a.hidden), lif(),
                                             nn.Linear(a.hidden, 10), lif())
        self.opt = tutorial_adam(cfg, self.net)

    def forward(self, x_seq):
        state, mem = None, []
        for x in x_seq:
            _, state = self.net(x, state)
            mem.append(state[-1].v)
        return torch.stack(mem)


PEERS: Dict[str, Tuple[Callable, type]] = {"spikingjelly": (load_spikingjelly, SpikingJellyPeer),
                                          "norse": (load_norse, NorsePeer)}


def find_peers(names=PEER_NAMES) -> Tuple[Dict[str, object], List[str]]:
    """The peers that import, with their modules, and a note for each one that does not."""
    found, notes = {}, []
    for name in names:
        try:
            found[name] = PEERS[name][0]()
        except Exception as e:  # not installed, or broken: the bench goes on without it
            notes.append(f"{name} not available ({type(e).__name__}: {e}); its columns are "
                         'blank (pip install -e ".[bench]")')
    return found, notes


def library_versions(peers) -> str:
    from importlib.metadata import version
    return ", ".join(f"{name} {version(name)}" for name in peers)


# ------------------------------------------------------------------------------- ours
class Ours:
    """The project's pipeline for one case: the same calls train.py makes."""

    def __init__(self, case: Case, data_root: str, data=None):
        # as train.py does on the CPU; process-wide, so the other sides in the same process
        # get the same allocator (only the memory check runs each side in its own process)
        keep_freed_memory()
        self.cfg = compose_cfg(case, data_root)
        self.data = data if data is not None else load_splits(self.cfg)
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(self.cfg)
        self.runner = Runner(self.cfg, self.model, torch.device("cpu"))
        self.opt = build_optimizer(self.cfg, self.model.parameters())
        self.gen = torch.Generator().manual_seed(self.cfg.seed)
        self.perm = torch.randperm(len(self.data.train_x), generator=self.gen)
        self.pos = 0

    def train_batch(self) -> int:
        if self.pos + BATCH > len(self.perm):
            self.perm, self.pos = torch.randperm(len(self.perm), generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + BATCH]
        self.pos += BATCH
        self.model.train()
        y = self.data.train_y[idx]
        spk, mem = self.runner.forward(self.data.train_x[idx])
        loss = readout_loss(self.runner.readout, spk, mem, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return len(y)

    def evaluate(self, n: int) -> int:
        self.runner.evaluate(self.data.test_x[:n], self.data.test_y[:n])
        return n


def user_network(case: Case, a: SimpleNamespace) -> nn.Module:
    """The case's network as a user writes it with snn_sweep.nn (README, Bring your own
    network), instead of through models.py."""
    def leaky() -> fast.Neurons:
        return fast.Neurons(snn.Leaky(beta=a.beta, threshold=a.threshold))
    if case.conv:
        c_in, c1, c2 = a.channels
        return fast.Sequential(fast.ConvPool(nn.Conv2d(c_in, c1, a.k)), leaky(),
                               fast.ConvPool(nn.Conv2d(c1, c2, a.k)), leaky(),
                               fast.Linear(nn.Linear(a.flat, 10)), leaky())
    return fast.Sequential(fast.Linear(nn.Linear(a.inputs, a.hidden)), leaky(),
                           fast.Linear(nn.Linear(a.hidden, 10)), leaky())


class UserBuilt(Ours):
    """byo: a user's network built from snn_sweep.nn's layers, trained by the same calls as
    ours; train_ratio_byo near 1 says such a network gets the built-ins' speed."""

    def __init__(self, case: Case, data_root: str, data=None):
        super().__init__(case, data_root, data)
        torch.manual_seed(self.cfg.seed)
        self.model = user_network(case, arch(self.cfg, tuple(self.data.train_x.shape[1:])))
        self.runner = Runner(self.cfg, self.model, torch.device("cpu"))
        self.opt = build_optimizer(self.cfg, self.model.parameters())


# ------------------------------------------------------------------- FLOPs and the peak
def matmul_peak_gflops(n: int = 2048) -> float:
    """This machine's fp32 peak as torch reaches it: the best of a few n x n matmuls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(PEAK_REPEATS):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def train_flops_per_sample(side: TensorFed) -> float:
    """Dense FLOPs of one training sample: forward multiply-accumulates of every Linear/Conv2d
    over all steps (counted on the tutorial network, the same architecture as ours) x 2 FLOPs
    x 3 (forward + backward). Dense: a time-constant input or a sparse spike train counts in
    full, whatever a side skips."""
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        fan_in = mod.in_features if isinstance(mod, nn.Linear) else \
            mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        macs += fan_in * out.numel()

    handles = [m.register_forward_hook(hook) for m in side.net.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            side.run(side.data.test_x[:1])
    finally:
        for h in handles:
            h.remove()
    return 6.0 * macs


# ------------------------------------------------------------------------------- timing
def timed(fn, n: int):
    t0 = time.perf_counter()
    samples = sum(fn() for _ in range(n))
    return samples, time.perf_counter() - t0


def bench_case(case: Case, data_root: str, data, batches: int, rounds: int,
               eval_samples: int, peers: Dict[str, object]) -> Dict:
    cfg = compose_cfg(case, data_root)
    eval_n = min(eval_samples, len(data.test_x))
    sides = {"ours": Ours(case, data_root, data), "ref": Reference(case, cfg, data_root),
             "tensor": TensorTutorial(case, cfg, data)}
    if case.model != "ann":  # the peers are SNN libraries
        for name, lib in peers.items():
            sides[name] = PEERS[name][1](case, cfg, data, lib)
        sides["byo"] = UserBuilt(case, data_root, data)
    for side in sides.values():  # warm-up: allocator, first-call costs
        side.train_batch()
        side.evaluate(min(eval_n, BATCH))
    per_round = max(1, batches // rounds)
    rates: Dict[Tuple[str, str], List[float]] = {(s, k): [] for s in sides
                                                 for k in ("train", "eval")}
    order = list(sides)
    for _ in range(rounds):  # alternate so that load changes on the machine hit every side
        for name in order:
            n, t = timed(sides[name].train_batch, per_round)
            rates[name, "train"].append(n / t)
        for name in order:
            n, t = timed(lambda: sides[name].evaluate(eval_n), 1)
            rates[name, "eval"].append(n / t)
        order.reverse()  # and no side always goes first

    row: Dict = {"case": case.name, "model": case.model,
                 "encoder": case.encoder if case.model != "ann" else "-",
                 "timesteps": case.steps if case.model != "ann" else "-"}
    present = [p for p in PEER_NAMES if p in sides]
    for kind in ("train", "eval"):
        for name in SIDES:
            row[f"{kind}_{name}"] = round(statistics.median(rates[name, kind]), 1) \
                if name in sides else ""
        ours = rates["ours", kind]
        others = {name: rates[name, kind] for name in ("ref", "tensor", *present, "byo")
                  if name in sides}
        if present:  # per round, the fastest peer of that round
            others["peer"] = [max(r) for r in zip(*(rates[p, kind] for p in present))]
        for name, suffix in RATIO_SUFFIX.items():
            row[f"{kind}_ratio{suffix}"] = round(statistics.median(
                o / t for o, t in zip(ours, others[name])), 2) if name in others else ""
    row["train_gflops_ours"] = round(
        train_flops_per_sample(sides["tensor"]) * row["train_ours"] / 1e9, 1)
    return row


def peak_rss_mib() -> float:
    """This process's peak resident set. Linux keeps ru_maxrss across fork+exec (a child
    would report its parent's peak), so VmHWM of the process's own memory map comes first."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / (1024 if sys.platform == "darwin" else 1)  # macOS: bytes, else KiB


def memory_child(which: str, steps: int, data_root: str, batches: int) -> None:
    """Runs in a fresh process: train `batches` batches, print peak RSS in MiB."""
    case = Case(f"rate{steps}", "snn", "rate", steps)
    runner = Ours(case, data_root) if which == "ours" else \
        Reference(case, compose_cfg(case, data_root), data_root)
    loaded = peak_rss_mib()
    for _ in range(batches):
        runner.train_batch()
    print(f"RSS {loaded:.0f} {peak_rss_mib():.0f}")


def memory_case(steps: int, data_root: str, batches: int) -> Dict:
    row: Dict = {"case": f"memory_rate{steps}_batch{BATCH}"}
    for which in ("ours", "ref"):
        out = subprocess.run([sys.executable, "-m", "snn_sweep.bench", "--data-root", data_root,
                              "--memory-child", which, "--memory-steps", str(steps),
                              "--batches", str(batches)], capture_output=True, text=True)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RSS ")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"memory subprocess failed:\n{out.stderr[-2000:]}")
        loaded, peak = (float(v) for v in lines[-1].split()[1:])
        row[f"peak_rss_mib_{which}"] = round(peak)
        row[f"after_data_rss_mib_{which}"] = round(loaded)
    return row


def readout_accuracy(forward, batches) -> Dict[str, float]:
    """Test accuracy read from the output membrane (mean over steps, this project's
    membrane_ce readout) and from output spike counts (tutorial 5's readout)."""
    n = by_mem = by_count = 0
    with torch.no_grad():
        for x, y in batches:
            spk, mem = forward(x)
            n += len(y)
            by_mem += int((mem.mean(0).argmax(-1) == y).sum())
            by_count += int((spk.sum(0).argmax(-1) == y).sum())
    return {"membrane": by_mem / n, "spike_count": by_count / n}


def accuracy(data_root: str) -> Dict:
    """One epoch on all 60k training images, seed 0, batch 128, default SNN (rate, T=25);
    accuracy on the 10k test images with both readouts. Ours reads the same images as tensors,
    in its own shuffled order."""
    case = CASES["rate25"]
    torch.manual_seed(0)
    ref = Reference(case, compose_cfg(case, data_root), data_root)
    t0 = time.perf_counter()
    for _ in range(len(ref.train_loader)):
        ref.train_batch()
    ref_time = time.perf_counter() - t0
    ref.net.eval()
    ref_acc = readout_accuracy(lambda x: ref.net(ref.encode(x)),
                               DataLoader(ref.test_loader.dataset, batch_size=1000))

    ours = Ours(case, data_root)
    d = ours.data
    full = datasets.MNIST(data_root, train=True)  # all 60k, as the reference trains on
    d.train_x = full.data.unsqueeze(1).float().div_(255.0)
    d.train_y = full.targets
    ours.perm = torch.randperm(len(d.train_x), generator=ours.gen)
    t0 = time.perf_counter()
    for _ in range(len(d.train_x) // BATCH):
        ours.train_batch()
    ours_time = time.perf_counter() - t0
    ours.model.eval()
    ours_acc = readout_accuracy(ours.runner.forward,
                                zip(d.test_x.split(1000), d.test_y.split(1000)))
    return {"case": "accuracy_rate25_1epoch",
            "test_acc_membrane_ours": round(ours_acc["membrane"], 4),
            "test_acc_membrane_ref": round(ref_acc["membrane"], 4),
            "test_acc_spike_count_ours": round(ours_acc["spike_count"], 4),
            "test_acc_spike_count_ref": round(ref_acc["spike_count"], 4),
            "epoch_s_ours": round(ours_time, 1), "epoch_s_ref": round(ref_time, 1)}


# ------------------------------------------------------------------------------- output
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), snntorch {snn.__version__}, "
            f"Python {platform.python_version()}")


def verdicts(rows: List[Dict], extra: List[Dict], peers_found: bool) -> List[str]:
    targets = list(TARGETS)
    targets += [(r["case"], "train_ratio_peer", CSNN_PEER_TARGET) for r in rows
                if r["model"] == "csnn"]
    targets += [(r["case"], col, EVAL_TARGET) for r in rows
                for col in ("eval_ratio", "eval_ratio_peer")]
    lines = []
    for case, col, minimum in targets:
        hit = [r for r in rows if r["case"] == case]
        if not hit or hit[0][col] == "":
            continue  # not run, or no peer (the ann has none)
        ok = hit[0][col] >= minimum
        lines.append(f"target {case} {col} >= {minimum}: {hit[0][col]} "
                     f"{'met' if ok else 'MISSED'}")
    if not peers_found:
        lines.append("targets against the peers: not checked (no peer measured)")
    for row in extra:
        if "peak_rss_mib_ours" in row:
            ok = row["peak_rss_mib_ours"] <= MEMORY_LIMIT_MIB
            lines.append(f"target T={MEMORY_CASE.steps} training peak RSS <= "
                         f"{MEMORY_LIMIT_MIB} MiB: {row['peak_rss_mib_ours']} "
                         f"{'met' if ok else 'MISSED'}")
    return lines


def tables(rows: List[Dict]) -> List[List[Dict]]:
    """The case rows as two tables: throughput, then ratios and the peak fraction."""
    head = ("case", "model", "encoder", "timesteps")
    speed = [k for k in rows[0] if k not in head and "ratio" not in k
             and k not in ("train_gflops_ours", "peak_frac")]
    ratio = [k for k in rows[0] if "ratio" in k] + ["train_gflops_ours", "peak_frac"]
    return [[{k: r[k] for k in (*head, *speed)} for r in rows],
            [{k: r[k] for k in ("case", *ratio)} for r in rows]]


def markdown(rows: List[Dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(rows: List[Dict]) -> None:
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.rjust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).rjust(width[c]) for c in cols))


LEGEND = ("Throughput in samples/s, the median over rounds. Sides: ours; ref, the snnTorch "
          "tutorial loop with its DataLoader; tensor, the same loop fed the tensors ours reads; "
          "spikingjelly and norse, the same network in each library's idiom, fed the tensor "
          "loop's spike trains; byo, the same network written by a user with snn_sweep.nn. Ratios: ours / that side (ratio alone: ours / ref; peer: "
          "ours / the fastest peer), the median of per-round ratios. train_gflops_ours: dense "
          "training FLOPs per sample x our samples/s; peak_frac: that / the fp32 matmul peak "
          "(above 1 where ours skips work the dense count includes: zeros in spike trains, a "
          "time-constant input computed once).")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated, from: {', '.join(CASES)}")
    p.add_argument("--batches", type=int, default=24, help="timed training batches per side")
    p.add_argument("--rounds", type=int, default=6, help="alternations of all sides")
    p.add_argument("--eval-samples", type=int, default=2000, help="per round and side")
    p.add_argument("--out", default="bench_results/bench.csv")
    p.add_argument("--quick", action="store_true", help=f"cases {','.join(QUICK)}, fewer batches")
    p.add_argument("--no-peers", action="store_true", help="leave SpikingJelly and Norse out")
    p.add_argument("--no-memory", action="store_true", help="skip the T=100 memory check")
    p.add_argument("--accuracy", action="store_true",
                   help="also train both for one epoch and compare test accuracy (~1.5 min)")
    p.add_argument("--memory-child", choices=["ours", "ref"], help=argparse.SUPPRESS)
    p.add_argument("--memory-steps", type=int, default=MEMORY_CASE.steps, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.memory_steps, args.data_root, args.batches)
        return 0
    names = QUICK if args.quick else [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    batches, rounds = (4, 2) if args.quick else (args.batches, args.rounds)
    try:
        data = load_splits(compose_cfg(CASES["rate25"], args.data_root))
    except InputError as e:  # a wrong --data-root: one line, no traceback
        sys.exit(f"error: --data-root {args.data_root}: {e}")
    peers, notes = ({}, ["peers left out (--no-peers)"]) if args.no_peers else find_peers()
    header = [machine(), *([f"peers: {library_versions(peers)}"] if peers else []), *notes]
    print("\n".join(header), flush=True)
    peak = matmul_peak_gflops()
    rows = []
    for name in names:
        rows.append(bench_case(CASES[name], args.data_root, data, batches, rounds,
                               args.eval_samples, peers))
        r = rows[-1]
        print(f"  {name}: train x{r['train_ratio']} ref, x{r['train_ratio_tensor']} tensor, "
              f"x{r['train_ratio_peer'] or '-'} peer; eval x{r['eval_ratio']} ref, "
              f"x{r['eval_ratio_peer'] or '-'} peer", flush=True)
        # again after each case: on a shared machine the best measurement is the peak
        peak = max(peak, matmul_peak_gflops())
    for r in rows:
        r["peak_frac"] = round(r["train_gflops_ours"] / peak, 3)
    header.append(f"fp32 matmul peak: {peak:.1f} GFLOP/s (the best torch.mm 2048x2048 of "
                  f"{PEAK_REPEATS * (len(rows) + 1)}); batch {BATCH}")
    print(header[-1])
    for table in tables(rows):
        print()
        print_table(table)
    extra = []
    if not args.no_memory:
        extra.append(memory_case(MEMORY_CASE.steps, args.data_root, 2 if args.quick else 3))
    if args.accuracy:
        extra.append(accuracy(args.data_root))
    for row in extra:
        print()
        print_table([row])
    lines = verdicts(rows, extra, bool(peers))
    print("\n" + "\n".join(lines))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    write_csv(args.out, rows)
    for row in extra:
        write_csv(os.path.splitext(args.out)[0] + f"_{row['case'].split('_')[0]}.csv", [row])
    md = os.path.splitext(args.out)[0] + ".md"
    with open(md, "w") as f:
        command = " ".join(["python -m snn_sweep.bench", *(argv if argv is not None
                                                           else sys.argv[1:])])
        f.write("".join(f"{line}  \n" for line in header)
                + f"Command: `{command}`  \n{LEGEND} Measured in one process, alternating in "
                f"{rounds} rounds.\n")
        for table in tables(rows):
            f.write("\n" + markdown(table))
        for row in extra:
            f.write("\n" + markdown([row]))
        f.write("\nTargets on this machine:\n\n" + "".join(f"- {v}\n" for v in lines))
    print(f"\nwrote {args.out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
