"""Bring your own network: a spiking MLP written as snnTorch's tutorial 5 writes it (its own
loop over time steps, snn.Leaky neurons, stacked spike and membrane records), and an encoder
of our own. conf/ beside this file makes them options of snn_sweep's config groups."""
import snntorch as snn
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_inputs: int = 784, num_hidden: int = 1000, num_outputs: int = 10,
                 beta: float = 0.95):
        super().__init__()
        self.fc1 = nn.Linear(num_inputs, num_hidden)
        self.lif1 = snn.Leaky(beta=beta)
        self.fc2 = nn.Linear(num_hidden, num_outputs)
        self.lif2 = snn.Leaky(beta=beta)

    def forward(self, x):  # x: the encoded input [T, B, 1, 28, 28]
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for step in range(x.shape[0]):
            cur1 = self.fc1(x[step].flatten(1))
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec), torch.stack(mem2_rec)  # each [T, B, 10]


def binarized(x: torch.Tensor, num_steps: int, threshold: float = 0.5) -> torch.Tensor:
    """An encoder: pixels above threshold spike at every step. [B, C, H, W] -> [T, B, C, H, W]"""
    return (x > threshold).float().expand(num_steps, *x.shape)
