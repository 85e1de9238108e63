"""A trained network as a NIR graph with its time constants stated, or a one-line refusal.

What is written (NIR: the Neuromorphic Intermediate Representation, `nir`): the run's
checkpoint.pt (the weights of its best validation epoch) as
Input -> [Flatten] -> Affine | Conv2d -> [AvgPool2d | SumPool2d] -> LIF ... -> Output, built here
from nir's node classes (snnTorch's export_to_nir is not used: with nir 1.0.8 it fails on its
own example, and it writes a dt it does not state). The encoder stays outside the graph: the
graph's input is one step of the encoded image, [C, H, W]; the encoder's name, settings and T
and the readout the run's accuracy assumes go into the graph's metadata and into
FILE.json beside it, with the agreement measured by re-importing the file.

Semantics, stated so that a simulator computes what the run trained:

- An snn.Leaky with beta b and threshold thr (learnt ones included) steps
  mem_t = b*mem_{t-1}*(1 - s_{t-1}) + I_t, s_t = H(mem_t - thr) (snnTorch's zero reset, one
  step late). Its spikes are exactly those of an LIF that resets to 0 at once, which is what a
  NIR LIF is: tau dv/dt = (v_leak - v) + r*I, spike and v <- v_reset when v > v_threshold.
  Forward Euler at dt = DT (the step snnTorch's importer assumes; stated in the metadata) gives
  v_t = (1 - dt/tau) v_{t-1} + (dt/tau) r I_t, so the graph has tau = dt / (1 - b), r = 1,
  v_leak = 0, v_reset = 0, v_threshold = thr, and the factor 1 / (1 - b) = tau / dt folded into
  the weights and bias of the layer that feeds the neurons (NIR's r would do the same, but Norse
  ignores r, while snnTorch handles both).
- Settings NIR cannot express are refused with one line naming the setting and the fix:
  subtract or no reset, max pooling, other neurons than Leaky, a beta of 1, and layers that
  are not snn_sweep.nn's. The fix names what reaches the network (Where): a config key for the
  built-in models (`neuron.reset_mechanism=zero`, `model.pool=sum`) and for a user's model
  given a neuron node, else the layer of the user's own code and its argument
  (`reset_mechanism='zero'` on its snn.Leaky layers, `ConvPool(conv, pool='sum')`).
- The readout: membrane_ce predicts the argmax over classes of the output neurons' membrane
  before their reset, averaged over the T steps; rate_ce and count_mse the argmax of output
  spike counts, ties broken by that membrane.
"""
import importlib.util
import json
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from omegaconf import OmegaConf

from .config import Readout, effective_timesteps, model_settings, uses_neuron
from .errors import InputError

DT = 1e-4  # seconds per step: what snntorch.import_nir assumes (stated in the metadata)
FAST_POOL = "snn_sweep.nn.ConvPool(conv, pool='sum') (or pool='avg')"


class Where:
    """How a refusal names what the user can change: the config key that reaches the model
    (`neuron.*` for the built-ins and for a user's model built from the neuron group's node,
    `model.neuron.*` for one holding its own, `model.pool` for the built-in conv nets), else
    the layer of the user's own network (model.<path>) and the argument to give it."""

    def __init__(self, cfg, model: torch.nn.Module):
        target = str(OmegaConf.select(cfg, "model._target_", default="") or "")
        self.builtin = target.startswith("snn_sweep.")
        self.neuron = self._neuron_key(cfg) if uses_neuron(cfg) else None
        self.paths = {id(m): name for name, m in model.named_modules()}

    def _neuron_key(self, cfg) -> str:
        group = cfg.get("neuron")
        if group is None:
            return "model.neuron"
        if self.builtin or OmegaConf.to_container(cfg.model)["neuron"] == "${neuron}":
            return "neuron"
        # a run record holds the config resolved: the group's node is then a copy of `neuron`
        mine, theirs = (OmegaConf.to_container(n, resolve=True) for n in (cfg.model.neuron, group))
        return "neuron" if {**mine, "name": 0} == {**theirs, "name": 0} else "model.neuron"

    def layer(self, m: torch.nn.Module) -> str:
        return f"model.{self.paths[id(m)]}" if self.paths.get(id(m)) else "model"

    def setting(self, neuron, key: str, value: Any) -> str:
        """`neuron.key=value` where a config key sets it, else `model.<path> (snn.X key=value)`."""
        if self.neuron:
            return f"{self.neuron}.{key}={value}"
        return f"{self.layer(neuron)} ({kind(neuron)} {key}={value!r})"

    def fix(self, argument: str, key: str) -> str:
        """How to change it: the config key, else the argument of the user's snn.Leaky layers."""
        if not self.neuron:
            return f"train with {argument} on its snn.Leaky layers"
        nir_ready = self.builtin and key.startswith("reset_mechanism")
        return f"train with {self.neuron}.{key}" + (" (as experiment=nir_ready does)"
                                                    if nir_ready else "")


def kind(m: torch.nn.Module) -> str:
    """snn.Leaky for snnTorch's neurons, module.Class for others."""
    module = type(m).__module__
    return f"{'snn' if module.startswith('snntorch') else module}.{type(m).__name__}"


def need_nir() -> None:
    if importlib.util.find_spec("nir") is None:
        raise InputError("the NIR export needs the nir package: pip install 'snn_sweep[nir]'")


# --- the run ---------------------------------------------------------------------------------

def _max_pooling(model) -> str:
    """The pointer to the fast layers' pooling NIR expresses, for a model that max-pools."""
    pools = (torch.nn.MaxPool1d, torch.nn.MaxPool2d, torch.nn.MaxPool3d)
    if any(isinstance(m, pools) for m in model.modules()):
        return f"; NIR has no max pooling: pool with {FAST_POOL}"
    return ""


def _layers(model) -> List[torch.nn.Module]:
    """The model's layers in order, fused pairs split, dropout (identity in evaluation) left
    out; InputError for a model not built from snn_sweep.nn's layers."""
    from . import nn as fast
    if not isinstance(model, fast.Sequential):
        raise InputError(f"model ({type(model).__module__}.{type(model).__name__}) is not an "
                         f"snn_sweep.nn.Sequential: the NIR export takes networks built from "
                         f"snn_sweep.nn's Linear, ConvPool and Neurons (snn.Leaky), see "
                         f"docs/byo.md#the-fast-layers{_max_pooling(model)}")
    out: List[torch.nn.Module] = []
    for m in model.layers:
        if isinstance(m, fast.LeakyLinear):
            out += [m.neurons, m.synapses]
        elif isinstance(m, (torch.nn.Dropout, fast.Dropout)):  # identity at inference
            continue
        elif isinstance(m, (fast.Linear, fast.ConvPool, fast.Neurons)):
            out.append(m)
        else:
            raise InputError(f"model: layer {type(m).__name__} has no NIR export; allowed: "
                             f"snn_sweep.nn.Linear, ConvPool, Neurons, Dropout, torch.nn.Dropout"
                             f"{_max_pooling(m)}")
    return out


def fold_norm(norm, w: torch.Tensor, b: torch.Tensor, pooled: int
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """A conv's weight and bias (float64) with the BatchNorm after its pooling folded in, as
    its running statistics make it at inference: y = pool(conv(x)) * scale + shift. Average
    pooling is linear in the conv's output, so scale and shift move into the conv; sum
    pooling adds `pooled` (4) outputs, so each carries a quarter of the shift."""
    scale = norm.weight.detach().double() / torch.sqrt(norm.running_var.double() + norm.eps)
    shift = norm.bias.detach().double() - norm.running_mean.double() * scale
    return w * scale.view(-1, 1, 1, 1), b * scale + shift / pooled


def neuron_params(neuron, where: Where) -> Tuple[float, float]:
    """(beta, threshold) of an exportable neuron; InputError naming the setting otherwise."""
    import snntorch as snn
    name = type(neuron).__name__
    what = (f"{where.neuron}.name: {name}" if where.neuron else
            f"{where.layer(neuron)} ({kind(neuron)})")
    use = (f"use {where.neuron}=leaky" if where.neuron == "neuron" else
           f"use {where.neuron}._target_=snntorch.Leaky" if where.neuron else "use snn.Leaky")
    if isinstance(neuron, snn.Synaptic):
        # Its zero reset acts one step late on the whole membrane, dropping that step's
        # synaptic current, which NIR's CubaLIF (reset at once) keeps: the spikes would differ.
        raise InputError(f"{what} has no exact NIR export (its delayed zero reset drops the "
                         f"synaptic current CubaLIF keeps); {use} (snn.Leaky, NIR's LIF)")
    if type(neuron) is not snn.Leaky:
        raise InputError(f"{what} has no exact NIR export; {use} (snn.Leaky, NIR's LIF)")
    reset = neuron.reset_mechanism
    if reset != "zero":
        raise InputError(f"{where.setting(neuron, 'reset_mechanism', reset)}: NIR's LIF "
                         f"resets to v_reset (subtract and none are not expressible); "
                         f"{where.fix('reset_mechanism=' + repr('zero'), 'reset_mechanism=zero')}")
    if neuron.inhibition or neuron.state_quant or float(neuron.graded_spikes_factor) != 1.0:
        raise InputError(f"{where.neuron or where.layer(neuron)}: inhibition, state_quant and "
                         f"graded spikes have no NIR export")
    if not neuron.reset_delay:
        raise InputError(f"{where.setting(neuron, 'reset_delay', False)}: has no NIR export "
                         f"here; {where.fix('reset_delay=True', 'reset_delay=true')}")
    beta = float(neuron.beta.detach().clamp(0, 1))
    threshold = float(neuron.threshold.detach())
    if beta >= 1.0:
        raise InputError(f"{where.setting(neuron, 'beta', beta)}: a LIF with beta 1 has no "
                         f"leak (tau infinite); {where.fix('beta < 1', 'beta < 1')}")
    if not threshold > 0:
        raise InputError(f"{where.setting(neuron, 'threshold', threshold)}: NIR's LIF "
                         f"needs a threshold > 0")
    return beta, threshold


def _lif(shape, beta: float, threshold: float):
    import nir
    full = lambda v: np.full(tuple(shape), v, dtype=np.float64)  # noqa: E731
    return nir.LIF(tau=full(DT / (1.0 - beta)), r=full(1.0), v_leak=full(0.0),
                   v_threshold=full(threshold), v_reset=full(0.0))


def to_nir(cfg, model, metadata: Optional[Dict] = None):
    """The NIR graph of a spiking model built from snn_sweep.nn's layers (see the module
    docstring); InputError naming the setting for anything NIR cannot express exactly."""
    need_nir()
    import nir
    from . import nn as fast
    layers = _layers(model)
    where = Where(cfg, model)
    shape = list(cfg.data.shape)  # [C, H, W] of one encoded step
    nodes: Dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(shape)})}
    order = ["input"]
    weights: List[torch.nn.Module] = []
    count = {"affine": 0, "conv": 0, "pool": 0, "lif": 0, "flatten": 0}

    def add(kind: str, node) -> str:
        name = f"{kind}{count[kind]}"
        count[kind] += 1
        nodes[name] = node
        order.append(name)
        return name

    i = 0
    while i < len(layers):
        m = layers[i]
        if isinstance(m, fast.Neurons):
            raise InputError(f"{where.layer(m)}: a Neurons layer without a weight layer before "
                             f"it has no NIR export")
        if not (i + 1 < len(layers) and isinstance(layers[i + 1], fast.Neurons)):
            raise InputError(f"{where.layer(m)}: {type(m).__name__} not followed by Neurons has "
                             f"no NIR export")
        beta, thr = neuron_params(layers[i + 1].neuron, where)
        gain = 1.0 / (1.0 - beta)  # tau / dt: NIR's LIF at dt scales its input by dt / tau
        w = m.layer.weight.detach().double()
        b = (m.layer.bias.detach().double() if m.layer.bias is not None
             else torch.zeros(w.shape[0], dtype=torch.float64))
        if isinstance(m, fast.ConvPool):
            conv = m.layer
            if m.pool == "max":
                raise InputError("model.pool=max: NIR has no max pooling; train with "
                                 "model.pool=avg or model.pool=sum (experiment=nir_ready)"
                                 if where.builtin else
                                 f"{where.layer(m)} (ConvPool pool='max'): NIR has no max "
                                 f"pooling; build it as {FAST_POOL}")
            pad = tuple(conv.padding)
            if (tuple(conv.stride), tuple(conv.dilation), conv.groups) != ((1, 1), (1, 1), 1) \
                    or conv.padding_mode != "zeros" or pad[0] != pad[1]:
                raise InputError(f"{where.layer(conv)}: only convolutions of stride 1, "
                                 f"dilation 1, one group and the same zero padding on both "
                                 f"axes have a NIR export here")
            if m.norm is not None:  # at inference BatchNorm is a per-channel affine: folded in
                w, b = fold_norm(m.norm, w, b, 4 if m.pool == "sum" else 1)
            # Average pooling is written as sum pooling of a conv scaled by 1/4 (exact in
            # floating point): both importers read SumPool2d, Norse no AvgPool2d.
            if m.pool == "avg":
                w, b = w / 4, b / 4
            add("conv", nir.Conv2d(input_shape=tuple(shape[1:]), weight=(w * gain).float().numpy(),
                                   stride=1, padding=pad[0], dilation=1, groups=1,
                                   bias=(b * gain).float().numpy()))
            c, h, wd = conv.out_channels, shape[1] + 2 * pad[0] - conv.kernel_size[0] + 1, \
                shape[2] + 2 * pad[1] - conv.kernel_size[1] + 1
            add("pool", nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                      padding=np.array([0, 0])))
            shape = [c, h // 2, wd // 2]
        elif isinstance(m, fast.Linear):
            if len(shape) > 1:
                add("flatten", nir.Flatten(input_type={"input": np.array(shape)},
                                           start_dim=0, end_dim=-1))
                # our channels-last path keeps PyTorch's (C, H, W) column order (nn.Linear)
                shape = [int(np.prod(shape))]
            if w.shape[1] != shape[0]:
                raise InputError(f"model: Linear of {w.shape[1]} inputs after a layer of "
                                 f"{shape[0]} outputs")
            add("affine", nir.Affine(weight=(w * gain).float().numpy(), bias=(b * gain).float().numpy()))
            shape = [w.shape[0]]
        else:
            raise InputError(f"{where.layer(m)}: layer {type(m).__name__} has no NIR export")
        add("lif", _lif(shape, beta, thr))
        weights.append(m.layer)
        i += 2
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    order.append("output")
    edges = list(zip(order[:-1], order[1:]))
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(metadata or {}))
    return graph


def describe(cfg) -> Dict[str, Any]:
    """What the graph leaves out and the run's accuracy assumes: the encoder and the readout."""
    enc = OmegaConf.to_container(cfg.encoder, resolve=True, enum_to_str=True)
    readout = model_settings(cfg.model).readout
    predict = ("argmax over classes of the output neurons' membrane before reset, averaged "
               "over the T steps" if readout == Readout.membrane_ce else
               "argmax over classes of the output spike count over the T steps, ties broken "
               "by the mean membrane before reset")
    return {
        "format": "snn_sweep NIR export 1",
        "dt": DT,
        "timesteps": effective_timesteps(cfg),
        "encoder": {"name": enc.pop("name", None), "target": enc.pop("_target_", None),
                    "settings": enc},
        "input": "one step of the encoder's output for one image, [C, H, W], in [0, 1] "
                 "(spikes) or analog (direct); the graph is stepped T times from rest",
        "readout": readout.value,
        "predict": predict,
        "neuron": "LIF, forward Euler at dt: v <- (1 - dt/tau) v + (dt/tau) r I, spike and "
                  "v <- v_reset when v > v_threshold (weights carry the factor tau/dt)",
        "model": cfg.model.name,
        "data": {"name": cfg.data.name, "shape": list(cfg.data.shape)},
    }


def metadata_for_nir(meta: Dict) -> Dict:
    """NIR's HDF5 writer stores metadata values as strings or numbers: nested ones as JSON."""
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
            for k, v in meta.items() if v is not None}


def last_lif(graph) -> str:
    import nir
    return [k for k, n in graph.nodes.items() if isinstance(n, nir.LIF)][-1]
