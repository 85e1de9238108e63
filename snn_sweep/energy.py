"""Spikes, synaptic operations and energy per sample, counted by forward hooks.

The model code knows nothing of it, and any model gets them: on snn_sweep.nn's sequence layers, or on the
nn.Linear / nn.Conv2d layers and snnTorch neurons of a plain network stepped in its own loop.

The energy model counts an accumulate (0.9 pJ) per synaptic event, a spike or non-zero input
reaching one synapse, and a multiply-accumulate (4.6 pJ) per dense MAC: an ANN's layers, and a
weight layer of an SNN whose input is analog rather than spikes (the first layer under direct
coding, multiplied at every step) (45 nm figures, Horowitz, ISSCC 2014).
"""
from collections import defaultdict
from typing import Dict, List

import snntorch as snn
import torch
from torch import nn

from .nn import Neurons, Synapses

PJ_PER_MAC = 4.6
PJ_PER_AC = 0.9
WEIGHTS = (nn.Linear, nn.Conv2d)


def outermost(model: nn.Module, kinds: tuple) -> List[nn.Module]:
    """The modules of model of the given kinds, in order, less those inside another one."""
    found: List[nn.Module] = []
    inside = set()
    for m in model.modules():
        if id(m) in inside:
            continue
        if isinstance(m, kinds):
            found.append(m)
            inside.update(id(c) for c in m.modules())
    return found


def weight_layers(model: nn.Module) -> List[nn.Module]:
    """Each weight layer once: snn_sweep.nn's over a sequence, else nn.Linear / nn.Conv2d."""
    return outermost(model, (Synapses, *WEIGHTS))


def neuron_layers(model: nn.Module) -> List[nn.Module]:
    """Each neuron layer once: snn_sweep.nn's Neurons, else snnTorch's neurons."""
    return outermost(model, (Neurons, snn.SpikingNeuron))


def _weights(layer: nn.Module) -> nn.Module:
    return layer.layer if isinstance(layer, Synapses) else layer


def macs(layer: nn.Module, out: torch.Tensor) -> int:
    """Dense multiply-accumulates of a weight layer that produced out (any layout)."""
    w = _weights(layer)
    per_out = w.in_features if isinstance(w, nn.Linear) else \
        w.in_channels // w.groups * w.kernel_size[0] * w.kernel_size[1]
    return per_out * out.numel()


def dense_macs(model: nn.Module, example: torch.Tensor) -> List[int]:
    """Multiply-accumulates per sample of each weight layer (weight_layers' order) for one
    dense step: example is one sample (and, for a spiking model, one step)."""
    layers = weight_layers(model)
    found: Dict[int, int] = {}

    def record(i: int):
        def hook(mod, inp, out):  # returns None: a hook's return value replaces the output
            found.setdefault(i, macs(mod, out))
        return hook

    handles = [_weights(m).register_forward_hook(record(i)) for i, m in enumerate(layers)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    for i, m in enumerate(layers):  # a Linear fed channels-last runs as F.linear: no hook
        w = _weights(m)
        if i not in found and isinstance(w, nn.Linear):
            found[i] = w.in_features * w.out_features
    return [found[i] for i in sorted(found)]


def fan_out(layer: nn.Module) -> int:
    """Synaptic operations one input event triggers in a weight layer (conv borders ignored)."""
    w = _weights(layer)
    if isinstance(w, nn.Linear):
        return w.out_features
    return w.out_channels * w.kernel_size[0] * w.kernel_size[1]


def spike_valued(x: torch.Tensor) -> bool:
    """Whether x holds spikes (0, 1, or -1 for delta coding's off events), not analog values."""
    if x.dim() > 1 and x.shape[0] > 1 and x.stride(0) == 0:
        x = x[:1]  # constant over time: one step tells
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


class Recorder:
    """While active (`with Recorder(model, dense) as rec:`), counts the events (non-zero inputs)
    that reach each weight layer, or its dense MACs when its input is analog (dense: dense_macs'
    per-step counts), and the spikes each neuron layer emits, numbered in the model's order.
    Use it under no_grad (evaluation): a training step runs fused layers whose spikes no hook
    sees."""

    def __init__(self, model: nn.Module, dense: List[int]):
        self.synapses = weight_layers(model)
        self.dense = dense
        self.neurons = neuron_layers(model)
        self.synops = 0
        self.analog_macs = 0
        self.spikes: Dict[int, int] = defaultdict(int)
        self.size: Dict[int, int] = {}  # neurons per sample of each layer
        self._handles: List = []

    def __enter__(self) -> "Recorder":
        for i, layer in enumerate(self.synapses):
            self._handles.append(layer.register_forward_hook(self._weights(i)))
        for i, layer in enumerate(self.neurons):
            self._handles.append(layer.register_forward_hook(self._outputs(i)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _weights(self, i: int):
        def hook(mod, inp, out):
            x = inp[0]
            if spike_valued(x):
                self.synops += int(torch.count_nonzero(x)) * fan_out(mod)
            elif isinstance(mod, Synapses):  # a sequence [T, B, ...]: T * B dense steps
                self.analog_macs += self.dense[i] * x.shape[0] * x.shape[1]
            else:  # one step of a plain layer
                self.analog_macs += macs(mod, out)
        return torch.compiler.disable(hook)  # trainer.compile: its counts stay out of the graph

    def _outputs(self, i: int):
        def hook(mod, inp, out):
            spk = out[0] if isinstance(out, tuple) else out
            self.spikes[i] += int(spk.sum())
            # a sequence layer's [T, B, ...], or one step [B, ...] of a neuron in a user's loop
            self.size[i] = (spk[0, 0] if isinstance(mod, Neurons) else spk[0]).numel()
        return torch.compiler.disable(hook)

    def stats(self, n_samples: int, steps: int) -> Dict:
        """Firing rate of each spiking layer; spikes, synops and energy per sample."""
        out: Dict = {}
        for i in range(len(self.neurons)):
            if i in self.size:
                out[f"firing_rate_{i}"] = self.spikes[i] / (n_samples * steps * self.size[i])
        out["spikes_per_sample"] = sum(self.spikes.values()) / n_samples
        out["synops_per_sample"] = self.synops / n_samples
        out["energy_pj_per_sample"] = out["synops_per_sample"] * PJ_PER_AC \
            + self.analog_macs / n_samples * PJ_PER_MAC
        return out
