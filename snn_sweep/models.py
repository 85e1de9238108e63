"""The networks, in plain PyTorch with snnTorch neurons.

Spiking models take a sequence [T, B, C, H, W] and return output spikes and membrane [T, B, K];
their layers (layers.py) are chosen here, when the model is built. ANNs take [B, C, H, W] and
return logits as a 1-step "membrane" [1, B, K], so one readout/loss code path serves every
model.
"""
from typing import List, Tuple

import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import functional as SF
from snntorch import surrogate
from torch import nn

from .config import Readout
from .layers import (ConvPool, InputConvPool, InputLinear, LeakyLinear, Linear, Neurons,
                     Synapses, fusable_pair)
from .lif import surrogate_derivative


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


class SpikingNet(nn.Module):
    """Layers (layers.py) applied in turn to x [T, B, ...]; the last, the readout neurons,
    returns output spikes and membrane [T, B, K]."""

    def __init__(self, layers: List[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor):
        for layer in self.layers:
            x = layer(x)
        return x


def spiking_layers(synapses: List[Synapses], neuron_cfg, dropout: float = 0.0
                   ) -> List[nn.Module]:
    """synapses[i] -> neurons -> synapses[i + 1] ... -> readout neurons. Neurons whose spikes
    only feed a Linear are fused with it (layers.LeakyLinear); with dropout, their spikes go
    through nn.Dropout first, unfused."""
    derivative = surrogate_derivative(neuron_cfg.surrogate, neuron_cfg.surrogate_args)
    neurons = [Neurons(make_neuron(neuron_cfg), derivative, readout=i == len(synapses) - 1)
               for i in range(len(synapses))]
    layers: List[nn.Module] = [synapses[0]]
    for n, s in zip(neurons[:-1], synapses[1:]):
        if dropout:
            layers += [n, nn.Dropout(dropout), s]
        elif fusable_pair(n, s):
            layers.append(LeakyLinear(n, s))
        else:
            layers += [n, s]
    return layers + [neurons[-1]]


def hidden(layers: List[nn.Module], dropout: float) -> List[nn.Module]:
    """An ANN's hidden activation, then dropout if any."""
    return layers + [nn.Dropout(dropout)] if dropout else layers


class ANN(nn.Module):
    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor):
        return None, self.body(x).unsqueeze(0)


def conv_block(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k), nn.MaxPool2d(2))


def conv_out_shape(channels, k: int, in_shape) -> Tuple[int, int, int]:
    body = nn.Sequential(conv_block(in_shape[0], channels[0], k), conv_block(*channels, k))
    return tuple(body(torch.zeros(1, *in_shape)).shape[1:])


def build_model(model_cfg, neuron_cfg, in_shape, num_classes: int) -> nn.Module:
    p = model_cfg.dropout
    if model_cfg.arch == "mlp":
        sizes = [int(torch.tensor(in_shape).prod()), *model_cfg.hidden, num_classes]
        linears = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        if not model_cfg.spiking:
            layers: List[nn.Module] = [nn.Flatten()]
            for lin in linears[:-1]:
                layers += hidden([lin, nn.ReLU()], p)
            return ANN(nn.Sequential(*layers, linears[-1]))
        return SpikingNet(spiking_layers(
            [InputLinear(linears[0]), *(Linear(lin) for lin in linears[1:])], neuron_cfg, p))
    c1, c2 = model_cfg.channels
    k = model_cfg.kernel_size
    out_shape = conv_out_shape((c1, c2), k, in_shape)
    fc = nn.Linear(int(torch.tensor(out_shape).prod()), num_classes)
    if not model_cfg.spiking:
        return ANN(nn.Sequential(*hidden([conv_block(in_shape[0], c1, k), nn.ReLU()], p),
                                 *hidden([conv_block(c1, c2, k), nn.ReLU()], p), nn.Flatten(), fc))
    return SpikingNet(spiking_layers(
        [InputConvPool(nn.Conv2d(in_shape[0], c1, k)), ConvPool(nn.Conv2d(c1, c2, k)),
         Linear(fc, channels_last=out_shape)], neuron_cfg, p))


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
