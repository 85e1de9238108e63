"""Bring your own neuron: an adaptive-threshold LIF, snn.Leaky whose threshold rises with each
of its spikes and decays back (spike-frequency adaptation). conf/neuron/adaptive.yaml makes it
an option of the `neuron` group, for the built-in models (model=snn ...) and yours."""
import snntorch as snn
import torch


class AdaptiveLeaky(snn.Leaky):
    """snn.Leaky (its arguments pass through) with a threshold of threshold + a, where a rises
    by `jump` at each spike and decays by `rho` a step (as the ALIF neurons of Bellec et al.
    2018). Like every snnTorch neuron it keeps its state; reset_mem() starts it from rest."""

    def __init__(self, beta: float, jump: float = 0.2, rho: float = 0.9, **kwargs):
        super().__init__(beta=beta, **kwargs)
        self.jump, self.rho = jump, rho
        self.register_buffer("adapt", torch.zeros(0), persistent=False)

    def reset_mem(self):
        self.adapt = torch.zeros_like(self.adapt)
        return super().reset_mem()

    def mem_reset(self, mem):
        # snn.Leaky's step calls this first: the previous step's spike (which resets the
        # membrane), checked against the threshold it had; then the threshold adapts to it
        if self.adapt.shape != mem.shape:
            self.adapt = torch.zeros_like(mem)
        spiked = self.spike_grad(mem - self.threshold - self.adapt).detach()
        self.adapt = self.rho * self.adapt + self.jump * spiked
        return spiked

    def fire(self, mem):
        return self.spike_grad(mem - self.threshold - self.adapt)
