"""Spiking layers that run a whole sequence [T, B, ...] at once: the fast path, as a public API.

    import snntorch as snn
    from torch import nn
    from snn_sweep import nn as fast

    net = fast.Sequential(                      # x [T, B, 1, 28, 28] -> (spk, mem) [T, B, 10]
        fast.Linear(nn.Linear(784, 1000)),
        fast.Neurons(snn.Leaky(beta=0.95)),
        fast.Linear(nn.Linear(1000, 10)),
        fast.Neurons(snn.Leaky(beta=0.95)))

Weight layers (Linear, ConvPool: an nn.Linear or nn.Conv2d on every step) and neuron layers
(Neurons: an snnTorch neuron, the recurrence over time) alternate. A weight layer runs as one
large matmul/conv over T*B rows. A sequence constant over time (a stride-0 view along T, as direct
coding gives) is computed once by a weight layer, stays a stride-0 view, and a neuron integrates
it without copying it T times. Conv layers pass channels-last sequences [T, B, H, W, C] (conv.py).
Sequential wires them: its first weight layer takes the model's input (a spike train enters
through the sparse paths of sparse.py and conv.py), a Linear after conv layers reads their
channels-last output, a plain snn.Leaky followed by a Linear (through Dropout or not) is fused with
it (LeakyLinear), and the last Neurons is the readout, returning (spikes, membrane).
"""
from .layers import (FUSED_MAX_OUT, ConvPool, Dropout, LeakyLinear, Linear, Neurons, Sequential,
                     Synapses, constant, fusable_run, repeat, run_neuron)

__all__ = ["FUSED_MAX_OUT", "ConvPool", "Dropout", "LeakyLinear", "Linear", "Neurons",
           "Sequential", "Synapses", "constant", "fusable_run", "repeat", "run_neuron"]
