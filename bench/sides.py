"""The sides fed the in-memory tensors: the tutorial loop (tensor), ours and byo (the Runner)."""
import math
import time
from types import SimpleNamespace

import torch
from torch import nn

from snn_sweep import nn as fast
from snn_sweep.build import build_model, build_optimizer, build_scheduler
from snn_sweep.data import load_splits
from snn_sweep.runner import Runner, keep_freed_memory

from .cases import BATCH, Case, arch, compose_cfg
from .tutorial import leaky, per_step_ce, spike_trains, tutorial_adam, tutorial_net

CPU = torch.device("cpu")


# ------------------------------------------------------------- sides fed the same tensors
def eval_batch_size(cfg, device: torch.device = CPU) -> int:
    """Runner.evaluate's batch on the device (Runner.eval_batch_size): the tensor-fed sides
    evaluate in the same batches as ours (the cap depends on the config and device alone)."""
    return Runner(cfg, None, device).eval_batch_size()


def batch_order(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """A shuffled order of n samples, drawn on the CPU generator (the same order on every
    device, as the trainer's), kept beside the data."""
    return torch.randperm(n, generator=gen).to(device)


class TensorFed:
    """Batches drawn from the same in-memory tensors as ours (on their device), encoded per
    batch with spikegen; a subclass builds `net` (and moves it to self.device) and says how it
    runs a sequence (`forward`: [T, B, ...] -> output membrane [T, B, K])."""

    def __init__(self, case: Case, cfg, data):
        self.case, self.enc, self.data = case, cfg.encoder, data
        self.device = data.train_x.device
        self.eval_bs = eval_batch_size(cfg, self.device)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.perm = batch_order(len(data.train_x), self.gen, self.device)
        self.pos = 0
        self.arch = arch(cfg, tuple(cfg.model.in_shape))  # an image's, or a frame's

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
            self.perm, self.pos = batch_order(len(self.perm), self.gen, self.device), 0
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
        self.net = tutorial_net(case, self.arch).to(self.device)
        self.opt = tutorial_adam(cfg, self.net)

    def forward(self, x_seq):
        return self.net(x_seq)[1]


# ------------------------------------------------------------------------------- ours
class Ours:
    """The project's pipeline for one case: the trainer's calls (train.py's _train), its
    model, optimizer and scheduler built by build.py and stepped by Runner.train_step; on
    `device`, with the data there (as loop.fit moves it)."""

    def __init__(self, case: Case, data_root: str, data=None, device: torch.device = CPU):
        if device.type == "cpu":
            # as loop.fit does on the CPU; process-wide, so the other sides in the same process
            # get the same allocator (only the memory check runs each side in its own process)
            keep_freed_memory()
        self.cfg = compose_cfg(case, data_root)
        self.data = data if data is not None else load_splits(self.cfg).to(device)
        torch.manual_seed(self.cfg.seed)
        self.model = self.network(case).to(device)
        self.runner = Runner(self.cfg, self.model, device)
        self.opt = build_optimizer(self.cfg, self.model.parameters())
        batches = math.ceil(len(self.data.train_x) / self.cfg.data.batch_size)
        self.sched = build_scheduler(self.cfg, self.opt, self.cfg.trainer.epochs * batches)
        self.where = f"bench case {case.name}"  # what a diverging loss's error names
        self.augment_s = 0.0  # seconds in the augmentation (the bench's augment_frac)
        if self.runner.augment is not None:
            self.runner.augment = self._timed(self.runner.augment)
        self.gen = torch.Generator().manual_seed(self.cfg.seed)
        self.perm = batch_order(len(self.data.train_x), self.gen, device)
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
            self.perm, self.pos = batch_order(len(self.perm), self.gen, self.perm.device), 0
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
    """The case's network as a user writes it with snn_sweep.nn
    (README.md#bring-your-own-network), instead of through models.py."""
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
