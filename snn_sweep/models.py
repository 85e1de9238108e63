"""The networks, in plain PyTorch with snnTorch neurons.

Spiking models take a sequence [T, B, C, H, W] and return output spikes and membrane [T, B, K].
Each weight layer is applied to all T steps at once (one large matmul/conv over T*B rows);
only the neuron recurrence is stepped in time. ANNs take [B, C, H, W] and return logits as
a 1-step "membrane" [1, B, K], so one readout/loss code path serves every model.
"""
from typing import Dict, List, Optional, Tuple

import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import functional as SF
from snntorch import surrogate
from torch import nn

from .config import Readout
from .lif import fusable, leaky_linear, leaky_sequence, surrogate_derivative
from .sparse import sparse_input_linear


def make_neuron(cfg) -> nn.Module:
    spike_grad = getattr(surrogate, cfg.surrogate)(**cfg.surrogate_args)
    common = dict(threshold=cfg.threshold, spike_grad=spike_grad,
                  learn_beta=cfg.learn_beta, learn_threshold=cfg.learn_threshold,
                  reset_mechanism=cfg.reset_mechanism.value)
    if cfg.name == "leaky":
        return snn.Leaky(beta=cfg.beta, **common)
    if cfg.name == "lapicque":
        return snn.Lapicque(beta=cfg.beta, **common)
    if cfg.name == "synaptic":
        return snn.Synaptic(alpha=cfg.alpha, beta=cfg.beta, learn_alpha=cfg.learn_alpha, **common)
    if cfg.name == "alpha":
        return snn.Alpha(alpha=cfg.alpha, beta=cfg.beta, learn_alpha=cfg.learn_alpha, **common)
    raise ValueError(f"unknown neuron {cfg.name}")


def over_time(layer: nn.Module, x: torch.Tensor, model_input: bool = False) -> torch.Tensor:
    """Apply a stateless layer to every step of x [T, B, ...] in one call. The model's input
    to a Linear goes through sparse.py, which computes only what changes over time (spike
    trains)."""
    steps = x.shape[0]
    if model_input:
        y = sparse_input_linear(layer, x)
        if y is not None:
            return y
    y = layer(x.reshape(steps * x.shape[1], *x.shape[2:]))
    return y.view(steps, x.shape[1], *y.shape[1:])


def run_neuron(neuron: nn.Module, cur: torch.Tensor, derivative=None, steps=None,
               keep_mem: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Run a neuron from rest through cur [T, B, ...], or through cur [B, ...] repeated for
    `steps` steps; returns spikes and membrane [T, B, ...] (the membrane may be None if not
    keep_mem).

    A plain snn.Leaky runs as our fused recurrence (lif.py: one autograd node for the whole
    sequence, several times faster); other neurons are stepped with snnTorch itself, which
    keeps the state on the module: reset_mem() zeroes it so nothing carries over from the
    previous batch.
    """
    if fusable(neuron):
        return leaky_sequence(neuron, cur, derivative, steps, keep_mem)
    if steps is not None:
        cur = cur.unsqueeze(0).expand(steps, *cur.shape)
    neuron.reset_mem()
    spk, mem = [], []
    for t in range(cur.shape[0]):
        out = neuron(cur[t])  # (spk, [syn...], mem)
        spk.append(out[0])
        mem.append(out[-1])
    return torch.stack(spk), torch.stack(mem)


class SpikingNet(nn.Module):
    """A stack of (weight layer -> snnTorch neuron) blocks; the last block is the readout."""

    def __init__(self, blocks: List[nn.Module], neuron_cfg):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.neurons = nn.ModuleList(make_neuron(neuron_cfg) for _ in blocks)
        # the hand-written derivative of the neurons' surrogate, for the fused LIF backward
        self.derivative = surrogate_derivative(neuron_cfg.surrogate, neuron_cfg.surrogate_args)

    def forward(self, x: torch.Tensor, stats: Optional[Dict] = None):
        """x [T, B, ...]. If `stats` is a dict, per-layer event counts are added to it
        (inputs that are non-zero and spikes emitted), for firing rates and synops."""
        last = len(self.blocks) - 1
        cur = None  # block i's output, when the fused previous layer has computed it
        for i, (block, neuron) in enumerate(zip(self.blocks, self.neurons)):
            if stats is not None:  # x is None only after a fused layer without stats
                stats.setdefault(f"in_events_{i}", 0)
                stats[f"in_events_{i}"] += int(torch.count_nonzero(x))
            steps = None
            if cur is None:
                # A time-constant input (direct coding: a view with stride 0 along T) is
                # computed once; the neuron integrates it T times and sums its gradient over time.
                if x.shape[0] > 1 and x.stride(0) == 0:
                    steps = x.shape[0]
                    cur = block(x[0])
                else:
                    cur = over_time(block, x, model_input=i == 0)
            # Spikes that only feed a Linear go through one fused layer (lif.py), which
            # returns them only for stats.
            fused = leaky_linear(neuron, cur, self.blocks[i + 1], self.derivative, steps,
                                 keep_spikes=stats is not None) if i < last else None
            if fused is not None:
                cur, x = fused
            else:  # only the readout's membrane is used
                x, mem = run_neuron(neuron, cur, self.derivative, steps, keep_mem=i == last)
                cur = None
            if stats is not None:
                stats.setdefault(f"spikes_{i}", 0)
                stats[f"spikes_{i}"] += int(x.sum())
                stats[f"neurons_{i}"] = x[0, 0].numel()
        return x, mem


class ANN(nn.Module):
    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor, stats: Optional[Dict] = None):
        return None, self.body(x).unsqueeze(0)


def conv_block(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k), nn.MaxPool2d(2))


def conv_out_features(channels, k: int, in_shape) -> int:
    body = nn.Sequential(conv_block(in_shape[0], channels[0], k), conv_block(*channels, k))
    return body(torch.zeros(1, *in_shape)).numel()


def build_model(model_cfg, neuron_cfg, in_shape, num_classes: int) -> nn.Module:
    if model_cfg.arch == "mlp":
        sizes = [int(torch.tensor(in_shape).prod()), *model_cfg.hidden, num_classes]
        linears = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        if not model_cfg.spiking:
            layers: List[nn.Module] = [nn.Flatten()]
            for lin in linears[:-1]:
                layers += [lin, nn.ReLU()]
            return ANN(nn.Sequential(*layers, linears[-1]))
        return SpikingNet([nn.Sequential(nn.Flatten(), linears[0]), *linears[1:]], neuron_cfg)
    c1, c2 = model_cfg.channels
    k = model_cfg.kernel_size
    flat = conv_out_features((c1, c2), k, in_shape)
    if not model_cfg.spiking:
        return ANN(nn.Sequential(conv_block(in_shape[0], c1, k), nn.ReLU(), conv_block(c1, c2, k),
                                 nn.ReLU(), nn.Flatten(), nn.Linear(flat, num_classes)))
    return SpikingNet([conv_block(in_shape[0], c1, k), conv_block(c1, c2, k),
                       nn.Sequential(nn.Flatten(), nn.Linear(flat, num_classes))], neuron_cfg)


def dense_macs(model: nn.Module, example: torch.Tensor) -> List[int]:
    """Multiply-accumulates per sample of each Linear/Conv2d for one dense step, in order."""
    macs: List[int] = []

    def hook(mod, inp, out):
        per_out = mod.in_features if isinstance(mod, nn.Linear) else \
            mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        macs.append(per_out * out[0].numel())

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return macs


def fan_out(block: nn.Module) -> int:
    """Synaptic operations one input event triggers in a block (borders of convs ignored)."""
    layer = [m for m in block.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][0]
    if isinstance(layer, nn.Linear):
        return layer.out_features
    return layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]


_RATE_CE = SF.ce_rate_loss()
_COUNT_MSE = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)


def readout_loss(readout: Readout, spk, mem: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if readout == Readout.membrane_ce:
        # Tutorial 5 sums the per-step CE; the mean keeps losses comparable across T
        # (Adam's updates do not depend on the scale).
        # [B, K, T] with targets [B, T]: the same mean over all B*T terms, and ~2.5x faster
        # on the CPU than [T*B, K] rows, whose short class dim log_softmax handles poorly.
        return F.cross_entropy(mem.permute(1, 2, 0), y[:, None].expand(-1, mem.shape[0]))
    if readout == Readout.rate_ce:
        return _RATE_CE(spk, y)
    return _COUNT_MSE(spk, y)


def predict(readout: Readout, spk, mem: torch.Tensor) -> torch.Tensor:
    if readout == Readout.membrane_ce:
        return mem.mean(0).argmax(-1)
    # Spike counts; ties (e.g. no output spikes) are broken by the membrane.
    return (spk.sum(0) + 1e-3 * torch.tanh(mem.mean(0))).argmax(-1)
