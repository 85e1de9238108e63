"""The same network written with snn_sweep.nn's layers: the built-in models' speed."""
import snntorch as snn
from torch import nn

from snn_sweep import nn as fast


class FastNet(fast.Sequential):  # x [T, B, 1, 28, 28] -> (spk, mem), each [T, B, 10]
    def __init__(self, num_hidden: int = 1000, num_outputs: int = 10, beta: float = 0.95):
        super().__init__(
            fast.Linear(nn.Linear(784, num_hidden)), fast.Neurons(snn.Leaky(beta=beta)),
            fast.Linear(nn.Linear(num_hidden, num_outputs)), fast.Neurons(snn.Leaky(beta=beta)))
