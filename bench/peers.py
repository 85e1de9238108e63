"""The peer libraries' sides: the same networks in SpikingJelly and Norse, each in its own idiom."""
import importlib
import warnings
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .cases import PEER_NAMES, Case
from .sides import TensorFed
from .tutorial import tutorial_adam


def load_spikingjelly():
    return SimpleNamespace(**{m: importlib.import_module(f"spikingjelly.activation_based.{m}")
                              for m in ("neuron", "layer", "functional", "surrogate")})


def load_norse():
    with warnings.catch_warnings():  # Norse's import calls the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        return importlib.import_module("norse.torch")


class SpikingJellyPeer(TensorFed):
    """SpikingJelly 2's own idiom: `activation_based` layers and LIFNode in multi-step mode
    (each layer takes the whole [T, B, ...] sequence; LIFNode runs its fused CPU/CUDA kernel),
    the output membrane from the last LIFNode's v_seq, functional.reset_net after each batch.

    LIFNode with decay_input=False and v_reset=None charges H = V - V / tau + X, so tau =
    1 / (1 - beta) gives snnTorch's V * beta + X with the input unscaled; v_reset=None is the
    soft (subtract) reset, detach_reset=True detaches it as snnTorch does, and ATan(alpha=2)
    is snnTorch's default surrogate. What differs: SpikingJelly subtracts the threshold in the
    step the spike fires and its v_seq is the membrane after that reset (snnTorch subtracts it
    one step later, undecayed, and returns the membrane before it), and it fires at
    H >= threshold (snnTorch at mem > threshold)."""

    def __init__(self, case: Case, cfg, data, sj):
        super().__init__(case, cfg, data)
        self.sj, a, m = sj, self.arch, "m"

        def lif(readout: bool = False):
            # a learnable decay: ParametricLIFNode (PLIF), initialized at the same decay
            node, tau = ((sj.neuron.ParametricLIFNode, "init_tau") if a.learn_beta
                         else (sj.neuron.LIFNode, "tau"))
            return node(**{tau: 1.0 / (1.0 - a.beta)}, decay_input=False,
                        v_threshold=a.threshold, v_reset=None,
                        surrogate_function=sj.surrogate.ATan(alpha=2.0),
                        detach_reset=True, step_mode=m, store_v_seq=readout)

        L = sj.layer

        def conv(c_in: int, c_out: int):  # BatchNorm over all T x B rows in multi-step mode
            return [L.Conv2d(c_in, c_out, a.k, padding=a.padding, bias=not a.norm, step_mode=m),
                    L.MaxPool2d(2, step_mode=m),
                    *([L.BatchNorm2d(c_out, step_mode=m)] if a.norm else [])]
        if case.conv:
            c0, c1, c2 = a.channels
            self.net = nn.Sequential(
                *conv(c0, c1), lif(), *conv(c1, c2), lif(),
                L.Flatten(step_mode=m), L.Linear(a.flat, 10, step_mode=m), lif(readout=True))
        else:  # its multi-step Dropout keeps one mask for all steps, as ours
            drop = [L.Dropout(a.dropout, step_mode=m)] if a.dropout else []
            self.net = nn.Sequential(
                L.Flatten(step_mode=m), L.Linear(a.inputs, a.hidden, step_mode=m), lif(), *drop,
                L.Linear(a.hidden, 10, step_mode=m), lif(readout=True))
        self.net.to(self.device)
        self.opt = tutorial_adam(cfg, self.net)

    def forward(self, x_seq):
        self.net(x_seq)
        return self.net[-1].v_seq

    @staticmethod
    def implementation(sj, case: Case, device: torch.device) -> str:
        """Which of SpikingJelly's neuron implementations its multi-step LIF (PLIF with a
        learnable decay) runs on a CUDA device: it picks the first that loads of its native
        CUDA kernels, its Triton kernels and its PyTorch reference (SJ_LIF_CUDA_IMPLEMENTATION
        and SJ_PLIF_CUDA_IMPLEMENTATION can force one); the others' reasons in brackets."""
        neuron = "plif" if "neuron.learn_beta=true" in case.overrides else "lif"
        found = sj.functional.neuron_implementation(neuron, device)
        why = "; ".join(f"{k}: {v}" for k, v in found["unavailable"].items())
        return f"{neuron}: {found['implementation']}" + (f" ({why[:200]})" if why else "")

    def after_batch(self):
        self.sj.functional.reset_net(self.net)


class NorsePeer(TensorFed):
    """Norse 1.1's own idiom: torch layers and LIFBoxCell in a SequentialState, stepped over
    time with its state list (Norse has no sequence module for the box LIF); the output
    membrane is the last cell's state.v.

    LIFBoxCell takes one Euler step of dv/dt = tau_mem_inv * (v_leak - v + i) per call:
    v' = v + dt * tau_mem_inv * (i - v) = (1 - dt * tau_mem_inv) * v + dt * tau_mem_inv * i
    (v_leak = 0). A decay of beta per step needs dt * tau_mem_inv = 1 - beta, so tau_mem_inv =
    (1 - beta) / dt (with Norse's default dt = 1e-3: 50 per second for beta 0.95).
    reset_subtract gives the subtract reset. What differs from snnTorch: the input enters
    scaled by dt * tau_mem_inv = 1 - beta (the weights learn the scale), the reset is applied in
    the spike's own step and state.v is the membrane after it, the reset is not detached, and
    the surrogate is Norse's default SuperSpike (alpha 100; Norse has no ATan), and the decay
    stays fixed where ours learns it (neuron.learn_beta). On a GPU the loop runs compiled by
    torch.compile where that works (`mode` says whether it did)."""

    DT = 1e-3  # LIFBoxCell's default

    def __init__(self, case: Case, cfg, data, norse, compiled: Optional[bool] = None):
        super().__init__(case, cfg, data)
        a, dev = self.arch, self.device
        p = norse.LIFBoxParameters(
            tau_mem_inv=torch.as_tensor((1.0 - a.beta) / self.DT, device=dev),
            v_th=torch.as_tensor(a.threshold, device=dev), reset_method=norse.reset_subtract)

        def lif():
            return norse.LIFBoxCell(p, dt=self.DT)

        def conv(c_in: int, c_out: int):  # torch layers, stepped: BatchNorm per step
            return [nn.Conv2d(c_in, c_out, a.k, padding=a.padding, bias=not a.norm),
                    nn.MaxPool2d(2), *([nn.BatchNorm2d(c_out)] if a.norm else [])]
        if case.conv:
            c0, c1, c2 = a.channels
            self.net = norse.SequentialState(
                *conv(c0, c1), lif(), *conv(c1, c2), lif(),
                nn.Flatten(), nn.Linear(a.flat, 10), lif())
        else:
            drop = [nn.Dropout(a.dropout)] if a.dropout else []  # a new mask each step
            self.net = norse.SequentialState(nn.Flatten(), nn.Linear(a.inputs, a.hidden), lif(),
                                             *drop, nn.Linear(a.hidden, 10), lif())
        self.net.to(dev)
        self.opt = tutorial_adam(cfg, self.net)
        self.mode = "plain"
        # Norse's own advice for speed; by default on a GPU only (the CPU figures stay as they were)
        if dev.type != "cpu" if compiled is None else compiled:
            self._try_compile()

    def forward(self, x_seq):
        state, mem = None, []
        for x in x_seq:
            _, state = self.net(x, state)
            mem.append(state[-1].v)
        return torch.stack(mem)

    def _try_compile(self) -> None:
        """forward compiled by torch.compile if a training and an evaluation batch run so
        (compiled then, outside the timings); else the plain loop, `mode` saying why."""
        plain = self.forward
        self.forward = torch.compile(plain)
        try:
            self.train_batch()  # a step of Adam too: the sides' weights are not compared
            self.evaluate(min(self.eval_bs, len(self.data.test_x)))
        except Exception as e:  # TorchDynamo or Inductor cannot take it: the plain loop
            self.forward = plain
            self.mode = f"plain (torch.compile failed: {type(e).__name__}: " \
                        f"{' '.join(str(e).split())[:150]})"
            return
        self.mode = "torch.compile"


PEERS: Dict[str, Tuple[Callable, type]] = {"spikingjelly": (load_spikingjelly, SpikingJellyPeer),
                                          "norse": (load_norse, NorsePeer)}


def find_peers(names=PEER_NAMES) -> Tuple[Dict[str, object], List[str]]:
    """The peers that import, with their modules, and a note for each one that does not."""
    found, notes = {}, []
    for name in names:
        try:
            found[name] = PEERS[name][0]()
        except Exception as e:  # not installed, or broken: the bench goes on without it
            notes.append(f"{name} not available ({type(e).__name__}: {e}); its columns are "
                         'blank (pip install -e ".[bench]")')
    return found, notes


def library_versions(peers) -> str:
    from importlib.metadata import version
    return ", ".join(f"{name} {version(name)}" for name in peers)
