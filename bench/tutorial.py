"""snnTorch tutorials 5 and 6 as users write them: spike trains, networks, loss, Adam, `ref`.

The `ref` side (Reference) trains them through a DataLoader over torchvision MNIST; sides.py's
`tensor` side feeds them the tensors ours reads, and the peers (peers.py) take their spike
trains and Adam.
"""
from types import SimpleNamespace

import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import spikegen
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from snn_sweep import encoders

from .cases import BATCH, Case, arch


def spike_trains(case: Case, enc, images: torch.Tensor) -> torch.Tensor:
    """images [B, C, H, W] -> [T, B, C, H, W] as a tutorial user encodes them, per batch, for
    every side but ours. snnTorch has no saccade for delta coding: that one is ours (the same
    transform as conf/encoder/delta.yaml). An event case's frames [B, T, C, H, W] are the
    spikes already: time first, as a user of Tonic's frames does."""
    t = case.steps
    if case.events:
        return images.float().transpose(0, 1)
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
    loss = torch.zeros(1, device=mem.device)
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
    """Training and evaluation as the tutorials write them, DataLoader included (on a GPU each
    batch moved there, as they do)."""

    def __init__(self, case: Case, cfg, data_root: str, device: torch.device = torch.device("cpu")):
        tf = transforms.Compose([transforms.Resize((28, 28)), transforms.Grayscale(),
                                 transforms.ToTensor(), transforms.Normalize((0,), (1,))])
        self.case, self.enc = case, cfg.encoder
        self.train_loader = DataLoader(datasets.MNIST(data_root, train=True, transform=tf),
                                       batch_size=BATCH, shuffle=True, drop_last=True)
        self.test_loader = DataLoader(datasets.MNIST(data_root, train=False, transform=tf),
                                      batch_size=BATCH, shuffle=True, drop_last=True)
        self.train_iter = iter(self.train_loader)
        self.test_iter = iter(self.test_loader)
        self.device = device
        self.net = tutorial_net(case, arch(cfg, (1, 28, 28))).to(device)
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
        data, targets = data.to(self.device), targets.to(self.device)
        self.net.train()
        if self.case.model == "ann":
            loss_val = self.loss(self.net(data), targets)
        else:
            _, mem_rec = self.net(self.encode(data))
            loss_val = torch.zeros(1, device=self.device)
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
        data, targets = data.to(self.device), targets.to(self.device)
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
