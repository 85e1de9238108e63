"""The built-in networks, in plain PyTorch with snnTorch neurons, and the readouts.

`mlp` and `conv_net` are the `_target_`s of conf/model/: with a `neuron` (a factory, the
`neuron` node's partial: one neuron per layer, made by layer_neuron) they build a spiking network
from snn_sweep.nn's layers, without one its ANN twin. A spiking model takes [T, B, C, H, W] (any
C, H, W: images, or event frames such as N-MNIST's [2, 34, 34]) and returns output spikes and
membrane [T, B, K]; an ANN takes [B, C, H, W] and returns logits [B, K]. Any model keeping that
contract trains here, a user's own included (README).
"""
import inspect
import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from snntorch import functional as SF
from torch import nn

from . import nn as fast
from .config import Readout
from .nn.conv import POOLS

# A neuron factory: the `neuron` node's partial (conf/neuron/), called once per layer.
NeuronFactory = Callable[..., nn.Module]


def takes(factory: Callable, name: str) -> bool:
    """Whether factory (a class, function or partial) has a parameter called name."""
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin)
        return False


def layer_neuron(neuron: NeuronFactory, width: Optional[int] = None,
                 beta_per_neuron: bool = False) -> nn.Module:
    """One layer's neuron from the factory, the one place a model makes them. A fully connected
    layer passes its width: a factory that takes `linear_features` gets it unless it sets
    all_to_all=False (snnTorch's recurrent neurons, RLeaky and RSynaptic: their all-to-all
    feedback is a width x width Linear; one-to-one feedback refuses a width). With
    beta_per_neuron the neuron's beta becomes a tensor of `width` copies of it (a Parameter if
    the neuron learns beta: one decay learned per neuron)."""
    all_to_all = getattr(neuron, "keywords", {}).get("all_to_all", True)
    wants_width = width and all_to_all and takes(neuron, "linear_features")
    made = neuron(linear_features=width) if wants_width else neuron()
    if beta_per_neuron:
        if not width or not isinstance(getattr(made, "beta", None), torch.Tensor):
            raise ValueError(f"beta_per_neuron: {type(made).__name__} has no beta, or the "
                             f"layer no width, to make one per neuron")
        beta = made.beta.detach().expand(width).clone()
        made.beta = nn.Parameter(beta) if isinstance(made.beta, nn.Parameter) else beta
    return made


class ANN(nn.Module):
    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def width_of(synapses: fast.Synapses) -> Optional[int]:
    """A fully connected layer's number of neurons; None for a conv layer's."""
    return synapses.layer.out_features if isinstance(synapses, fast.Linear) else None


def spiking(synapses: List[fast.Synapses], neuron: NeuronFactory, dropout: float,
            beta_per_neuron: bool = False) -> fast.Sequential:
    """synapses[i] -> neurons (-> dropout) -> synapses[i + 1] ... -> readout neurons, a
    layer_neuron for each layer."""
    layers: List[nn.Module] = []
    for i, s in enumerate(synapses):
        layers += [s, fast.Neurons(layer_neuron(neuron, width_of(s), beta_per_neuron))]
        if dropout and i < len(synapses) - 1:
            layers.append(fast.Dropout(dropout))
    return fast.Sequential(*layers)


def with_dropout(layers: List[nn.Module], dropout: float) -> List[nn.Module]:
    """An ANN's hidden activation, then dropout if any."""
    return layers + [nn.Dropout(dropout)] if dropout else layers


def fully_connected(sizes: Sequence[int]) -> List[nn.Linear]:
    """sizes[0] -> sizes[1] -> ... -> sizes[-1]."""
    return [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]


def relu_layers(linears: List[nn.Linear], dropout: float) -> List[nn.Module]:
    """An ANN's fully connected layers: ReLU (and dropout) after each but the last."""
    layers: List[nn.Module] = []
    for lin in linears[:-1]:
        layers += with_dropout([lin, nn.ReLU()], dropout)
    return layers + [linears[-1]]


def mlp(in_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (1000,),
        neuron: Optional[NeuronFactory] = None, dropout: float = 0.0,
        beta_per_neuron: bool = False) -> nn.Module:
    """in -> hidden... -> num_classes: LIF layers with a neuron (784-1000-10 as snnTorch
    tutorial 5), ReLU without; dropout on every hidden layer's output while training. The
    input [C, H, W] is flattened (SHD's spike trains: [1, 1, 700]). beta_per_neuron: each
    layer's beta is a tensor of its width (with neuron.learn_beta, a decay learned per neuron,
    as the SHD papers' LIF layers)."""
    linears = fully_connected([math.prod(in_shape), *hidden, num_classes])
    if neuron is None:
        return ANN(nn.Sequential(nn.Flatten(), *relu_layers(linears, dropout)))
    return spiking([fast.Linear(lin) for lin in linears], neuron, dropout, beta_per_neuron)


def pool_layer(pool: str) -> nn.Module:
    """The ANN's 2x2 pooling: max, avg or sum (conv.POOLS)."""
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}: one of {', '.join(POOLS)}")
    if pool == "max":
        return nn.MaxPool2d(2)
    return nn.AvgPool2d(2, divisor_override=1 if pool == "sum" else None)


def conv_block(c_in: int, c_out: int, k: int, pool: str = "max", padding: int = 0,
               norm: bool = False) -> nn.Sequential:
    """An ANN's conv block: conv (without bias before BatchNorm, whose shift replaces it),
    2x2 pooling, BatchNorm if norm (after the pool, on a quarter of the elements)."""
    conv = nn.Conv2d(c_in, c_out, k, padding=padding, bias=not norm)
    return nn.Sequential(conv, pool_layer(pool), *([nn.BatchNorm2d(c_out)] if norm else []))


def conv_out_shape(channels, k: int, in_shape, padding: int = 0) -> Tuple[int, int, int]:
    body = nn.Sequential(conv_block(in_shape[0], channels[0], k, padding=padding),
                         conv_block(*channels, k, padding=padding))
    return tuple(body(torch.zeros(1, *in_shape)).shape[1:])


def spiking_conv_block(c_in: int, c_out: int, k: int, pool: str, padding: int,
                       norm: bool) -> fast.ConvPool:
    """conv_block's layers as one fast.ConvPool (conv, pool, BatchNorm over all T x B rows)."""
    conv = nn.Conv2d(c_in, c_out, k, padding=padding, bias=not norm)
    return fast.ConvPool(conv, pool, nn.BatchNorm2d(c_out) if norm else None)


def conv_net(in_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (12, 64),
             kernel_size: int = 5, neuron: Optional[NeuronFactory] = None,
             dropout: float = 0.0, pool: str = "max", padding: int = 0,
             norm: bool = False, hidden: Sequence[int] = ()) -> nn.Module:
    """c1 C k - P2 - c2 C k - P2 - hidden... - num_classes (snnTorch tutorial 6's
    12C5-MP2-64C5-MP2-10 without `hidden`): LIF after each block and fully connected layer with
    a neuron, ReLU without. `pool`: 2x2 max pooling (MP2, the default), avg or sum (NIR has
    average and sum pooling, no max: snn_sweep.export). `padding` pads each conv; `norm` puts
    BatchNorm after each pool (conv-pool-BN-LIF blocks, as the PLIF paper's conv SNNs have
    BatchNorm before each LIF; with neuron.learn_beta each LIF layer learns its decay);
    `hidden` adds fully connected layers before the output (the shape of the published conv
    SNNs above 99.5% on MNIST: TSSL-BP's 15C5-P2-40C5-P2-300-10, PLIF's 2048-unit layer)."""
    c1, c2 = channels
    k = kernel_size
    out_shape = conv_out_shape((c1, c2), k, in_shape, padding)
    linears = fully_connected([math.prod(out_shape), *hidden, num_classes])
    if neuron is None:
        return ANN(nn.Sequential(
            *with_dropout([conv_block(in_shape[0], c1, k, pool, padding, norm), nn.ReLU()],
                          dropout),
            *with_dropout([conv_block(c1, c2, k, pool, padding, norm), nn.ReLU()], dropout),
            nn.Flatten(), *relu_layers(linears, dropout)))
    return spiking([spiking_conv_block(in_shape[0], c1, k, pool, padding, norm),
                    spiking_conv_block(c1, c2, k, pool, padding, norm),
                    *[fast.Linear(lin) for lin in linears]], neuron, dropout)


_RATE_CE = SF.ce_rate_loss()
_COUNT_MSE = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)


def readout_loss(readout: Readout, spk, mem: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if readout == Readout.membrane_ce:
        # Tutorial 5 sums the per-step CE; the mean keeps losses comparable across T
        # (Adam's updates do not depend on the scale).
        # [B, K, T] with targets [B, T]: the same mean over all B*T terms, and faster
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
