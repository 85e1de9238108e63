"""The layers of a spiking network, each applied to a whole sequence [T, B, ...] at once.

Synaptic layers (a weight layer on every step) and neuron layers (the recurrence over time)
alternate; models.build_model picks the implementation of each when the model is built, and
SpikingNet calls them in order. A weight layer runs as one large matmul/conv over T*B rows.
A sequence constant over time (a stride-0 view along T, as direct coding gives) is computed
once by a weight layer, stays a stride-0 view, and a neuron integrates it without copying it T
times. Conv layers pass channels-last sequences [T, B, H, W, C] (conv.py).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .conv import conv_pool, input_conv_pool
from .lif import Derivative, fusable, leaky_linear, leaky_sequence
from .sparse import sparse_input_linear


def constant(x: torch.Tensor) -> bool:
    """x [T, B, ...] is one tensor repeated over time (a stride-0 view)."""
    return x.shape[0] > 1 and x.stride(0) == 0


def repeat(y: torch.Tensor, steps: int) -> torch.Tensor:
    """y [1, B, ...] as a stride-0 view [steps, B, ...]."""
    return y.expand(steps, *y.shape[1:])


class Synapses(nn.Module):
    """A weight layer on every step of a sequence; `layer` holds the weights (nn.Linear or
    nn.Conv2d; energy.py counts synaptic operations by it). Subclasses define over_time."""
    layer: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if constant(x):
            return repeat(self.over_time(x[:1]), x.shape[0])
        return self.over_time(x)

    def over_time(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Linear(Synapses):
    """nn.Linear on every step of x [T, B, ...] (features flattened from dim 2). With
    channels_last=(C, H, W) the input is [T, B, H, W, C] while the weight's columns stay in
    PyTorch's (C, H, W) flatten order, so checkpoints match the unfused model's."""

    def __init__(self, layer: nn.Linear, channels_last: Optional[Tuple[int, int, int]] = None):
        super().__init__()
        self.layer, self.channels_last = layer, channels_last

    def affine(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight [K, F] (columns in the input's flatten order) and bias."""
        w = self.layer.weight
        if self.channels_last is not None:
            c, h, wd = self.channels_last
            w = w.view(-1, c, h, wd).permute(0, 2, 3, 1).reshape(w.shape[0], -1)
        return w, self.layer.bias

    def over_time(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2)
        if self.channels_last is None:  # the module itself: hooks see it run
            return self.layer(x)
        return F.linear(x, *self.affine())


class InputLinear(Linear):
    """The Linear that takes the model's input (in PyTorch's flatten order): a spike train goes
    through sparse.py, which computes only what changes over time."""

    def over_time(self, x: torch.Tensor) -> torch.Tensor:
        y = sparse_input_linear(self.layer, x.flatten(2))
        return y if y is not None else super().over_time(x)


class ConvPool(Synapses):
    """nn.Conv2d then 2x2 max pooling on every step of x [T, B, H, W, C] (conv.py)."""

    def __init__(self, layer: nn.Conv2d):
        super().__init__()
        self.layer = layer

    def over_time(self, x: torch.Tensor) -> torch.Tensor:
        return conv_pool(self.layer, x)


class InputConvPool(ConvPool):
    """ConvPool on the model's input x [T, B, C, H, W]; a spike train enters through the
    majority split (conv.py). Returns [T, B, H', W', C']."""

    def over_time(self, x: torch.Tensor) -> torch.Tensor:
        return input_conv_pool(self.layer, x)


def run_neuron(neuron: nn.Module, cur: torch.Tensor, derivative: Optional[Derivative] = None,
               steps: Optional[int] = None, keep_mem: bool = True
               ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Run a neuron from rest through cur [T, B, ...], or through cur [B, ...] repeated for
    `steps` steps; returns spikes and membrane [T, B, ...] (the membrane may be None if not
    keep_mem).

    A plain snn.Leaky runs as our fused recurrence (lif.py: one autograd node for the whole
    sequence); other neurons are stepped with snnTorch itself, which keeps the state on the
    module: reset_mem() zeroes it so nothing carries over from the previous batch.
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


class Neurons(nn.Module):
    """An snnTorch neuron over a sequence of input currents [T, B, ...]: returns the spikes,
    or (spikes, membrane) for the readout. `derivative` is the neuron's surrogate written out
    (lif.surrogate_derivative), for the fused backward."""

    def __init__(self, neuron: nn.Module, derivative: Optional[Derivative],
                 readout: bool = False):
        super().__init__()
        self.neuron, self.derivative, self.readout = neuron, derivative, readout

    def forward(self, cur: torch.Tensor):
        steps = cur.shape[0] if constant(cur) else None
        spk, mem = run_neuron(self.neuron, cur[0] if steps else cur, self.derivative, steps,
                              keep_mem=self.readout)
        return (spk, mem) if self.readout else spk


class LeakyLinear(nn.Module):
    """Leaky neurons and the Linear their spikes feed, as one layer when training on the
    compiled CPU path (lif.LeakyLinearFunction: the spikes never leave the cache); otherwise
    the two in turn: without a gradient to take (evaluation, where energy.Recorder's hooks
    see both), or off that path (a GPU, float64)."""

    def __init__(self, neurons: Neurons, synapses: Linear):
        super().__init__()
        self.neurons, self.synapses = neurons, synapses

    def forward(self, cur: torch.Tensor) -> torch.Tensor:
        steps = cur.shape[0] if constant(cur) else None
        flat = cur[0].flatten(1) if steps else cur.flatten(2)
        fused = leaky_linear(self.neurons.neuron, flat, *self.synapses.affine(),
                             self.neurons.derivative, steps, keep_spikes=False)
        if fused is not None:
            return fused[0]
        return self.synapses(self.neurons(cur))


def fusable_pair(neurons: Neurons, synapses: Synapses) -> bool:
    """Whether LeakyLinear can run these two as one."""
    return fusable(neurons.neuron) and isinstance(synapses, Linear)
