"""NeuroBench's workload and static metrics, counted by forward hooks on any model.

The model code knows nothing of it, and any model gets them: on snn_sweep.nn's sequence layers,
or on the nn.Linear / nn.Conv2d layers, snnTorch neurons and ReLU / Sigmoid of a plain network
(an ANN too) stepped in its own loop. The definitions are NeuroBench 2.3's
(tests/test_neurobench.py checks the counts against it), per sample:

- synaptic operations of a weight layer, at each step: its input counts as spikes when every
  value of the step's batch is 0, 1 or -1 (then accumulates, ACs), else multiply-accumulates
  (MACs); effective = pairs of a non-zero input and a non-zero weight (conv borders and zero
  weights excluded, bias not counted); dense = the same with all inputs and weights one. An
  input constant over time (direct coding) counts at every step, as a stepped run computes it.
- activation sparsity: zeros over all outputs of the activation layers (spiking neurons, ReLU,
  Sigmoid), all steps and samples; membrane updates: each spiking neuron's membrane at the
  first step, then each change of it from one step to the next.
- energy_pj = effective ACs x 0.9 pJ + effective MACs x 4.6 pJ (45 nm, Horowitz, ISSCC 2014);
  synops = effective ACs + effective MACs.
"""
from collections import defaultdict
from typing import Dict, List

import snntorch as snn
import torch
from torch import nn

from .nn import ConvPool, Neurons, Synapses, constant, run_neuron

PJ_PER_MAC = 4.6
PJ_PER_AC = 0.9
# result.json's metrics_version: 2, NeuroBench's definitions; runs without it (version 1)
# counted a synaptic operation as an input event times its layer's fan-out (conv borders and
# zero weights included) and an analog input as dense MACs: their energy and synops differ.
METRICS_VERSION = 2
WEIGHTS = (nn.Linear, nn.Conv2d)
ACTIVATIONS = (nn.ReLU, nn.Sigmoid)  # the activation modules NeuroBench's models hook
SPIKING = (Neurons, snn.SpikingNeuron)
CONNECTIONS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # NeuroBench's stateless layers
RECURRENT = (nn.RNNBase, nn.RNNCellBase)


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
    return outermost(model, SPIKING)


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


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def static_metrics(model: nn.Module) -> Dict:
    """NeuroBench's Footprint (bytes of parameters and buffers), ConnectionSparsity (zero
    weights over all weights of the connection layers, not rounded) and ParameterCount."""
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, RECURRENT) or (isinstance(m, CONNECTIONS) and not list(m.children())):
            ws = list(m.parameters(recurse=False)) if isinstance(m, RECURRENT) else [m.weight]
            zeros += sum(int((w == 0).sum()) for w in ws)
            total += sum(w.numel() for w in ws)
    return {"footprint_bytes": size, "connection_sparsity": zeros / total if total else 0.0,
            "n_params": n_params(model)}


def _steps(layer: nn.Module, x: torch.Tensor):
    """A weight layer's input as [S, R, ...] (S steps of R rows; Linear: [S, R, F], conv:
    [S, R, C, H, W]) and how many times each step counts (T for a constant sequence)."""
    if isinstance(layer, Synapses):
        times = x.shape[0] if constant(x) else 1
        x = x[:1] if times > 1 else x
        if isinstance(layer, ConvPool):
            return (x if layer.first else x.permute(0, 1, 4, 2, 3)), times
        return x.flatten(2), times
    if isinstance(layer, nn.Linear):
        return x.reshape(1, -1, x.shape[-1]), 1
    return x.reshape(1, -1, *x.shape[-3:]), 1


def spike_steps(x: torch.Tensor) -> torch.Tensor:
    """Which steps of x [S, ...] hold spikes (NeuroBench's rule: every value 0, 1 or -1)."""
    return ((x == 0) | (x == 1) | (x == -1)).flatten(1).all(1)


def linear_ops(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Effective operations of each step of x [S, R, F] through weight [K, F]: for each input
    column, its non-zero inputs times its non-zero weights."""
    per_column = (weight != 0).sum(0).double()
    return (x != 0).sum(1).double() @ per_column


def conv_ops(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Effective operations of each step of x [S, R, C, H, W] through conv: the binary input
    convolved with the binary kernel summed over each group's output channels (the padding
    does not count, as zeros)."""
    g = conv.groups
    w = (conv.weight != 0).float()
    kernel = w.view(g, -1, *w.shape[1:]).sum(1)  # [g, C/g, kh, kw]
    ones = conv._conv_forward((x.flatten(0, 1) != 0).float(), kernel, None)
    return ones.view(x.shape[0], -1).double().sum(1)


class Recorder:
    """While active (`with Recorder(model) as rec:`, under no_grad: a training step runs fused
    layers whose spikes no hook sees), counts the module docstring's metrics; spiking neuron
    layers are numbered in the model's order (firing_rate_<i>). One call of model is one batch
    (a neuron stepped in the model's own loop starts its membrane count there)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.synapses = weight_layers(model)
        self.neurons = neuron_layers(model)
        self.activations = outermost(model, (*SPIKING, *ACTIVATIONS))
        self.ops = {"acs": 0.0, "macs": 0.0, "dense": 0.0}
        self.zeros = self.outputs = self.updates = 0
        self.spikes: Dict[int, int] = defaultdict(int)
        self.size: Dict[int, int] = {}  # neurons per sample of each layer
        self._dense: Dict = {}  # dense operations per row and step, by (layer, input shape)
        self._stepped: Dict[int, int] = {}  # calls of each plain neuron in this batch
        self._pre: Dict[int, torch.Tensor] = {}
        self._handles: List = []

    def __enter__(self) -> "Recorder":
        hook = self._handles.append
        hook(self.model.register_forward_pre_hook(torch.compiler.disable(self._batch)))
        for layer in self.synapses:
            hook(layer.register_forward_hook(torch.compiler.disable(self._weights)))
        for layer in self.activations:
            hook(layer.register_forward_hook(torch.compiler.disable(self._outputs)))
            if isinstance(layer, snn.SpikingNeuron):
                hook(layer.register_forward_pre_hook(torch.compiler.disable(self._before)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _batch(self, mod, inp) -> None:
        self._stepped.clear()

    def _dense_per_row(self, w: nn.Module, x: torch.Tensor) -> int:
        key = (id(w), tuple(x.shape[2:]))
        if key not in self._dense:
            if isinstance(w, nn.Linear):
                self._dense[key] = w.in_features * w.out_features
            else:
                kernel = torch.ones(w.groups, *w.weight.shape[1:], device=x.device)
                ones = w._conv_forward(torch.ones(1, *x.shape[2:], device=x.device), kernel, None)
                self._dense[key] = int(ones.double().sum()) * (w.out_channels // w.groups)
        return self._dense[key]

    def _weights(self, mod, inp, out) -> None:
        w = _weights(mod)
        with torch.autocast(inp[0].device.type, enabled=False):  # exact counts, in float32
            x, times = _steps(mod, inp[0])
            ops = linear_ops(mod.affine(inp[0].shape)[0] if isinstance(mod, Synapses) and
                             isinstance(w, nn.Linear) else w.weight, x) \
                if isinstance(w, nn.Linear) else conv_ops(w, x)
            dense = self._dense_per_row(w, x)
        spiking = spike_steps(x)
        self.ops["acs"] += float(ops[spiking].sum()) * times
        self.ops["macs"] += float(ops[~spiking].sum()) * times
        self.ops["dense"] += dense * x.shape[0] * x.shape[1] * times

    def _before(self, mod, inp) -> None:
        if isinstance(getattr(mod, "mem", None), torch.Tensor):
            self._pre[id(mod)] = mod.mem

    def _outputs(self, mod, inp, out) -> None:
        act = out[0] if isinstance(out, tuple) else out
        self.zeros += act.numel() - int(torch.count_nonzero(act))
        self.outputs += act.numel()
        if not isinstance(mod, SPIKING):
            return
        i = self.neurons.index(mod) if mod in self.neurons else None
        if isinstance(mod, Neurons):
            self.updates += self._sequence_updates(mod, inp[0], out)
        elif isinstance(getattr(mod, "mem", None), torch.Tensor):
            calls = self._stepped.get(id(mod), 0)
            self._stepped[id(mod)] = calls + 1
            pre, post = self._pre.get(id(mod)), mod.mem
            self.updates += post.numel() if calls == 0 or pre is None else \
                int(torch.count_nonzero(pre - post))
        if i is not None:
            self.spikes[i] += int(act.sum())
            # a sequence layer's [T, B, ...], or one step [B, ...] of a neuron in a user's loop
            self.size[i] = (act[0, 0] if isinstance(mod, Neurons) else act[0]).numel()

    @staticmethod
    def _sequence_updates(mod: Neurons, cur: torch.Tensor, out) -> int:
        """Membrane updates of a sequence layer: the readout returns its membrane, a hidden
        layer's is recomputed from its input current (the fused kernels do not keep it)."""
        if isinstance(out, tuple):
            mem = out[1]
        else:
            steps = cur.shape[0] if constant(cur) else None
            mem = run_neuron(mod.neuron, cur[0] if steps else cur, mod.derivative, steps)[1]
        return mem[0].numel() + int(torch.count_nonzero(mem[1:] - mem[:-1]))

    def stats(self, n_samples: int, steps: int) -> Dict:
        """The module docstring's metrics per sample (and each spiking layer's firing rate)."""
        out: Dict = {}
        for i in range(len(self.neurons)):
            if i in self.size:
                out[f"firing_rate_{i}"] = self.spikes[i] / (n_samples * steps * self.size[i])
        if self.neurons:
            out["spikes_per_sample"] = sum(self.spikes.values()) / n_samples
        acs, mac = self.ops["acs"] / n_samples, self.ops["macs"] / n_samples
        out.update(effective_acs_per_sample=acs, effective_macs_per_sample=mac,
                   dense_ops_per_sample=self.ops["dense"] / n_samples,
                   synops_per_sample=acs + mac,
                   energy_pj_per_sample=acs * PJ_PER_AC + mac * PJ_PER_MAC,
                   activation_sparsity=self.zeros / self.outputs if self.outputs else 0.0,
                   membrane_updates_per_sample=self.updates / n_samples)
        return out
