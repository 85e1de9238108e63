"""The sides: ours and byo through the trainer's Runner; snnTorch's tutorial loop (ref, tensor)."""
import math
import time
from types import SimpleNamespace

import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import spikegen
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from .. import encoders
from .. import nn as fast
from ..build import build_model, build_optimizer, build_scheduler
from ..data import load_splits
from ..runner import Runner, keep_freed_memory
from .cases import BATCH, Case, arch, compose_cfg

CPU = torch.device("cpu")


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


# ---------------------------------------------------------------- the tutorial-style networks
class TutorialNet(nn.Module):
    """snnTorch tutorial 5's network: layers called once per step in a Python loop."""

    def __init__(self, steps: int, a: SimpleNamespace):
        super().__init__()
        self.steps = steps
        self.fc1 = nn.Linear(a.inputs, a.hidden)
        self.lif1 = leaky(a)
        # as a tutorial user adds it: a new mask each step
        self.drop = nn.Dropout(a.dropout) if a.dropout else nn.Identity()
        self.fc2 = nn.Linear(a.hidden, 10)
        self.lif2 = leaky(a)

    def forward(self, x):  # x [T, B, ...]
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for step in range(self.steps):
            cur1 = self.fc1(x[step].flatten(1))
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(self.drop(spk1))
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


def leaky(a: SimpleNamespace) -> snn.Leaky:
    return snn.Leaky(beta=a.beta, threshold=a.threshold, learn_beta=a.learn_beta)


def tutorial_conv(c_in: int, c_out: int, a: SimpleNamespace) -> nn.Sequential:
    """A conv block as a tutorial user writes it: conv, 2x2 max pooling (then BatchNorm2d on
    each step's batch)."""
    conv = nn.Conv2d(c_in, c_out, a.k, padding=a.padding, bias=not a.norm)
    return nn.Sequential(conv, nn.MaxPool2d(2), *([nn.BatchNorm2d(c_out)] if a.norm else []))


class TutorialConvNet(nn.Module):
    """snnTorch tutorial 6's network (12C5-MP2-64C5-MP2-10), stepped in a Python loop; with
    the case's padding, BatchNorm and learnable decay if it has them."""

    def __init__(self, steps: int, a: SimpleNamespace):
        super().__init__()
        self.steps = steps
        c0, c1, c2 = a.channels
        self.conv1 = tutorial_conv(c0, c1, a)
        self.lif1 = leaky(a)
        self.conv2 = tutorial_conv(c1, c2, a)
        self.lif2 = leaky(a)
        self.fc1 = nn.Linear(a.flat, 10)
        self.lif3 = leaky(a)

    def forward(self, x):  # x [T, B, C, H, W]
        mem1, mem2, mem3 = (n.init_leaky() for n in (self.lif1, self.lif2, self.lif3))
        spk3_rec, mem3_rec = [], []
        for step in range(self.steps):
            cur1 = self.conv1(x[step])
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.conv2(spk1)
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
    """Runner.evaluate's batch on the CPU (Runner.eval_batch_size): the tensor-fed sides
    evaluate in the same batches as ours (the cap depends on the config alone, not the model)."""
    return Runner(cfg, None, CPU).eval_batch_size()


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


# ------------------------------------------------------------------------------- ours
class Ours:
    """The project's pipeline for one case: the trainer's calls (train.py's _train), its
    model, optimizer and scheduler built by build.py and stepped by Runner.train_step."""

    def __init__(self, case: Case, data_root: str, data=None):
        # as train.py does on the CPU; process-wide, so the other sides in the same process
        # get the same allocator (only the memory check runs each side in its own process)
        keep_freed_memory()
        self.cfg = compose_cfg(case, data_root)
        self.data = data if data is not None else load_splits(self.cfg)
        torch.manual_seed(self.cfg.seed)
        self.model = self.network(case)
        self.runner = Runner(self.cfg, self.model, CPU)
        self.opt = build_optimizer(self.cfg, self.model.parameters())
        batches = math.ceil(len(self.data.train_x) / self.cfg.data.batch_size)
        self.sched = build_scheduler(self.cfg, self.opt, self.cfg.trainer.epochs * batches)
        self.where = f"bench case {case.name}"  # what a diverging loss's error names
        self.augment_s = 0.0  # seconds in the augmentation (the bench's augment_frac)
        if self.runner.augment is not None:
            self.runner.augment = self._timed(self.runner.augment)
        self.gen = torch.Generator().manual_seed(self.cfg.seed)
        self.perm = torch.randperm(len(self.data.train_x), generator=self.gen)
        self.pos = 0

    def _timed(self, augment):
        def timed_augment(x):
            t0 = time.perf_counter()
            out = augment(x)
            self.augment_s += time.perf_counter() - t0
            return out
        return timed_augment

    def network(self, case: Case) -> nn.Module:
        """The model, right after the seed: the config's (build.py)."""
        return build_model(self.cfg)

    def train_batch(self) -> int:
        if self.pos + BATCH > len(self.perm):
            self.perm, self.pos = torch.randperm(len(self.perm), generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + BATCH]
        self.pos += BATCH
        self.model.train()
        y = self.data.train_y[idx]
        self.runner.train_step(self.opt, self.sched, self.data.train_x[idx], y, self.where)
        return len(y)

    def evaluate(self, n: int) -> int:
        self.runner.evaluate(self.data.test_x[:n], self.data.test_y[:n])
        return n


def user_network(case: Case, a: SimpleNamespace) -> nn.Module:
    """The case's network as a user writes it with snn_sweep.nn (README, Bring your own
    network), instead of through models.py."""
    def lif() -> fast.Neurons:
        return fast.Neurons(leaky(a))

    def conv(c_in: int, c_out: int) -> fast.ConvPool:
        return fast.ConvPool(nn.Conv2d(c_in, c_out, a.k, padding=a.padding, bias=not a.norm),
                             norm=nn.BatchNorm2d(c_out) if a.norm else None)
    if case.conv:
        c_in, c1, c2 = a.channels
        return fast.Sequential(conv(c_in, c1), lif(), conv(c1, c2), lif(),
                               fast.Linear(nn.Linear(a.flat, 10)), lif())
    drop = [fast.Dropout(a.dropout)] if a.dropout else []
    return fast.Sequential(fast.Linear(nn.Linear(a.inputs, a.hidden)), lif(), *drop,
                           fast.Linear(nn.Linear(a.hidden, 10)), lif())


class UserBuilt(Ours):
    """byo: a user's network built from snn_sweep.nn's layers, trained by the same calls as
    ours; train_ratio_byo near 1 says such a network gets the built-ins' speed."""

    def network(self, case: Case) -> nn.Module:
        return user_network(case, arch(self.cfg, tuple(self.data.train_x.shape[1:])))
