"""The sequence layers (weight, neuron, dropout layers and Sequential) that call the kernels."""
import logging
from typing import List, Optional, Set, Tuple

import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

from .conv import POOLS, conv_pool, full, input_conv_pool
from .derivatives import Derivative, derivative_of
from .lif import fusable, leaky_sequence
from .lif_linear import leaky_linear
from .sparse import sparse_input_linear

log = logging.getLogger(__name__)
_stepped: Set[Tuple[str, str]] = set()  # (neuron class, reason) already logged


def note_stepped(neuron: nn.Module) -> None:
    """Log, once per process for each neuron class and reason, that a neuron lif.fusable
    refuses runs the stepped path (snnTorch's own step, a Python call per time step)."""
    name = type(neuron).__name__
    reason = (f"{name} is not snn.Leaky itself" if type(neuron) is not snn.Leaky else
              "its settings are not the fused recurrence's (inhibition, state_quant, "
              "init_hidden, reset_delay=False or graded spikes)")
    if (name, reason) not in _stepped:
        _stepped.add((name, reason))
        log.info(f"{name} neurons run the stepped path, not the fused LIF kernels: {reason}")


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
            return repeat(full(self.over_time(x[:1])), x.shape[0])
        return full(self.over_time(x))

    def over_time(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Linear(Synapses):
    """nn.Linear on every step of x [T, B, ...] (features flattened from dim 2). As the first
    layer of a Sequential it takes the model's input: a spike train goes through sparse.py,
    which computes only what changes over time. After conv layers (channels_last, set by
    Sequential) the input is [T, B, H, W, C] while the weight's columns stay in PyTorch's
    (C, H, W) flatten order, so checkpoints match the step-by-step model's."""

    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.layer, self.first, self.channels_last = layer, False, False

    def affine(self, x_shape: Tuple[int, ...]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight [K, F] (columns in the flatten order of an input of x_shape) and bias."""
        w = self.layer.weight
        if self.channels_last:
            h, wd, c = x_shape[-3:]
            w = w.view(-1, c, h, wd).permute(0, 2, 3, 1).reshape(w.shape[0], -1)
        return w, self.layer.bias

    def over_time(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            y = sparse_input_linear(self.layer, x.flatten(2))
            if y is not None:
                return y
        if not self.channels_last:  # the module itself: hooks see it run
            return self.layer(x.flatten(2))
        return F.linear(x.flatten(2), *self.affine(x.shape))


class ConvPool(Synapses):
    """nn.Conv2d, then 2x2 pooling, then `norm` if given (an nn.BatchNorm2d: statistics over
    all T x B rows, as a multi-step conv-BN block) on every step of x [T, B, H, W, C]
    (conv.py): `pool` max (the default), avg or sum (the two NIR can express). As the first
    layer of a Sequential it takes the model's input [T, B, C, H, W], a spike train through
    the majority split (conv.py); it returns [T, B, H', W', C']. An input constant over time
    (direct coding) is convolved and normalized once."""

    def __init__(self, layer: nn.Conv2d, pool: str = "max", norm: Optional[nn.Module] = None):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool={pool!r}: one of {', '.join(POOLS)}")
        self.layer, self.first, self.pool, self.norm = layer, False, pool, norm

    def over_time(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            return input_conv_pool(self.layer, x, self.pool, self.norm)
        return conv_pool(self.layer, x, self.pool, self.norm)


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
    or (spikes, membrane) for the readout (the last Neurons of a Sequential). The fused
    backward uses the neuron's surrogate derivative written out (derivatives.derivative_of) where
    snnTorch's surrogate is one lif.py knows, else autograd through spike_grad."""

    def __init__(self, neuron: nn.Module, readout: bool = False):
        super().__init__()
        self.neuron, self.readout = neuron, readout
        self.derivative: Optional[Derivative] = derivative_of(neuron.spike_grad)
        if not fusable(neuron):
            note_stepped(neuron)

    def forward(self, cur: torch.Tensor):
        steps = cur.shape[0] if constant(cur) else None
        spk, mem = run_neuron(self.neuron, cur[0] if steps else cur, self.derivative, steps,
                              keep_mem=self.readout)
        return (spk, mem) if self.readout else spk


class Dropout(nn.Module):
    """Dropout on a sequence [T, B, ...] with one mask for all T steps, as SpikingJelly's
    multi-step dropout: a neuron dropped for a sample is silent for that sample's whole
    presentation, as an ANN's unit is for an input. (A fresh mask every step, nn.Dropout on
    [T, B, ...], only thins the spike trains: noise that a rate readout averages away.) Kept
    values are scaled by 1/(1-p), as nn.Dropout's. Between Neurons and a Linear, Sequential
    fuses it into LeakyLinear."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p={p!r}: a number in [0, 1)")
        self.p = p

    def scale(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The mask over 1 - p, [B, ...], for x [T, B, ...]; None when it does nothing (not
        training, or p = 0)."""
        if not self.training or self.p == 0:
            return None
        return F.dropout(x.new_ones(x.shape[1:]), self.p, training=True)

    def forward(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        scale = self.scale(x) if scale is None else scale
        if scale is None:
            return x
        if constant(x):
            return repeat(x[:1] * scale, x.shape[0])
        return x * scale


# Under autocast (trainer.precision=bf16) a Linear wider than this runs faster as a bfloat16
# GEMM than in the fused float32 kernel; a narrower one does not (docs/performance.md).
FUSED_MAX_OUT = 64


class LeakyLinear(nn.Module):
    """Leaky neurons and the Linear their spikes feed, with Dropout between them or not, as one
    layer when training on the compiled CPU path (lif_linear.LeakyLinearFunction: the spikes never
    leave the cache, the dropout mask scales them there); otherwise the layers in turn, with
    the same mask: without a gradient to take (evaluation, where energy.Recorder's hooks see
    each), off that path (a GPU, float64), or under autocast with a Linear wider than
    FUSED_MAX_OUT. The Linear computes in float32 whenever training would fuse it, in
    evaluation too, so that the two agree under any trainer.precision."""

    def __init__(self, neurons: Neurons, synapses: Linear, dropout: Optional[Dropout] = None):
        super().__init__()
        self.neurons, self.synapses, self.dropout = neurons, synapses, dropout

    def forward(self, cur: torch.Tensor) -> torch.Tensor:
        steps = cur.shape[0] if constant(cur) else None
        flat = cur[0].flatten(1) if steps else cur.flatten(2)
        scale = self.dropout.scale(cur) if self.dropout is not None else None
        wide = (torch.is_autocast_enabled(cur.device.type)
                and self.synapses.layer.out_features > FUSED_MAX_OUT)
        if not wide:
            fused = leaky_linear(self.neurons.neuron, flat, *self.synapses.affine(cur.shape),
                                 self.neurons.derivative, steps, keep_spikes=False,
                                 scale=None if scale is None else scale.reshape(flat.shape[-2:]))
            if fused is not None:
                return fused[0]
        spk = self.neurons(cur)
        if scale is not None:
            spk = self.dropout(spk, scale)
        if wide:
            return self.synapses(spk)
        with torch.autocast(cur.device.type, enabled=False):  # float32, as the fused kernel
            return self.synapses(spk)


def fusable_run(layers) -> int:
    """How many of layers, from the first, LeakyLinear runs as one: Neurons of a fusable
    neuron, Dropout or not, then a Linear (3 or 2); else 0."""
    if not (isinstance(layers[0], Neurons) and fusable(layers[0].neuron)):
        return 0
    n = 2 if len(layers) > 2 and isinstance(layers[1], Dropout) else 1
    return n + 1 if len(layers) > n and isinstance(layers[n], Linear) else 0


class Sequential(nn.Module):
    """Layers applied in turn to x [T, B, ...], wired as the module docstring says; the last
    must be Neurons, the readout, and the whole returns (spikes, membrane) [T, B, K]."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        if not layers or not isinstance(layers[-1], Neurons):
            raise ValueError("the last layer of a Sequential must be Neurons (the readout)")
        weights = [m for m in layers if isinstance(m, Synapses)]
        if weights:
            weights[0].first = True
        after_conv = False  # whether the next Linear takes a conv's [T, B, H, W, C] output
        for m in layers:
            if isinstance(m, Linear):
                m.channels_last, after_conv = after_conv, False
            after_conv = after_conv or isinstance(m, ConvPool)
        layers[-1].readout = True
        fused: List[nn.Module] = []
        i = 0
        while i < len(layers):
            n = fusable_run(layers[i:])
            if n:
                run = layers[i:i + n]
                fused.append(LeakyLinear(run[0], run[-1], run[1] if n == 3 else None))
                i += n
            else:
                fused.append(layers[i])
                i += 1
        self.layers = nn.ModuleList(fused)

    def forward(self, x: torch.Tensor):
        for layer in self.layers:
            x = layer(x)
        return x
