"""Spikes, synaptic operations and energy per sample: counted by forward hooks, so the model
code knows nothing of it.

The energy model counts an accumulate (0.9 pJ) per synaptic event, a spike or non-zero input
reaching one synapse, and a multiply-accumulate (4.6 pJ) per dense MAC: an ANN's layers, and an
SNN's first layer under direct coding, whose analog input is multiplied at every step
(45 nm figures, Horowitz, ISSCC 2014).
"""
from collections import defaultdict
from typing import Dict, List

import torch
from torch import nn

from .layers import Neurons, Synapses

PJ_PER_MAC = 4.6
PJ_PER_AC = 0.9


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


def fan_out(layer: nn.Module) -> int:
    """Synaptic operations one input event triggers in a weight layer (conv borders ignored)."""
    if isinstance(layer, nn.Linear):
        return layer.out_features
    return layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]


class Recorder:
    """While active (`with Recorder(model) as rec:`), counts the non-zero inputs each Synapses
    layer receives and the spikes each Neurons layer emits, numbered in the model's order.
    Use it under no_grad (evaluation): a training step runs fused layers whose spikes no hook
    sees."""

    def __init__(self, model: nn.Module):
        self.synapses = [m for m in model.modules() if isinstance(m, Synapses)]
        self.neurons = [m for m in model.modules() if isinstance(m, Neurons)]
        self.in_events: Dict[int, int] = defaultdict(int)
        self.spikes: Dict[int, int] = defaultdict(int)
        self.size: Dict[int, int] = {}  # neurons per sample of each layer
        self._handles: List = []

    def __enter__(self) -> "Recorder":
        for i, layer in enumerate(self.synapses):
            self._handles.append(layer.register_forward_pre_hook(self._inputs(i)))
        for i, layer in enumerate(self.neurons):
            self._handles.append(layer.register_forward_hook(self._outputs(i)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _inputs(self, i: int):
        def hook(mod, inp):
            self.in_events[i] += int(torch.count_nonzero(inp[0]))
        return hook

    def _outputs(self, i: int):
        def hook(mod, inp, out):
            spk = out[0] if isinstance(out, tuple) else out
            self.spikes[i] += int(spk.sum())
            self.size[i] = spk[0, 0].numel()
        return hook

    def stats(self, n_samples: int, steps: int, macs: List[int], direct_input: bool) -> Dict:
        """Firing rate of each spiking layer; spikes, synops and energy per sample. Under
        direct coding the first layer's input is analog: dense MACs at every step."""
        out: Dict = {}
        for i in range(len(self.neurons)):
            out[f"firing_rate_{i}"] = self.spikes[i] / (n_samples * steps * self.size[i])
        out["spikes_per_sample"] = sum(self.spikes.values()) / n_samples
        synops = sum(self.in_events[i] * fan_out(layer.layer)
                     for i, layer in enumerate(self.synapses) if i > 0 or not direct_input)
        out["synops_per_sample"] = synops / n_samples
        first_macs = steps * macs[0] if direct_input else 0
        out["energy_pj_per_sample"] = out["synops_per_sample"] * PJ_PER_AC \
            + first_macs * PJ_PER_MAC
        return out
