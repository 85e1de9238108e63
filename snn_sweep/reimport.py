"""The export's check: a NIR graph re-imported by snnTorch and Norse, run on the run's encoded test images, compared with our model.

The test slice is encoded once with the run's encoder (seed 0); our model and the re-imported
graph (snnTorch's import_from_nir; Norse's from_nir where it imports every node) run on the same
spikes, the latter step by step, a batch of images at a time (`batched`); their output spikes per
(image, step, neuron) and predicted classes are compared.
"""
import contextlib
import io
import logging
import warnings
from typing import Any, Dict, Tuple

import numpy as np
import torch

from .config import effective_timesteps, model_settings
from .nir_graph import DT, last_lif


@contextlib.contextmanager
def _quiet():
    """The importers print and warn about deprecations and their rescaling: kept off the
    command's output (their outcome is measured instead)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.root.level
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)
            logging.root.setLevel(level)


class _Membrane:
    """The output neuron's membrane before its reset, recorded by a hook on the imported
    module: beta * v_{t-1} + I_t (snnTorch's Leaky) or v_{t-1} + dt/tau (I_t - v_{t-1})
    (Norse's LIFBoxCell), from the module's own parameters and state."""

    def __init__(self, module, kind: str, scale: float = 1.0):
        self.kind, self.values, self.scale = kind, [], scale
        self.handle = module.register_forward_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs, out):
        x = args[0] if args else kwargs["input_tensor"]
        if self.kind == "snntorch":
            prev = self.prev if self.prev is not None else torch.zeros_like(x)
            v = module.beta.clamp(0, 1) * prev + x
            self.prev = module.mem.detach().clone()
        else:
            state = args[1] if len(args) > 1 else kwargs.get("state")
            prev = state.v if state is not None else torch.zeros_like(x)
            v = prev + module.dt * module.p.tau_mem_inv * (x + module.p.v_leak - prev)
        self.values.append(v.detach() * self.scale)

    def start(self):
        self.prev, self.values = None, []


def import_snntorch(graph):
    from snntorch import utils
    from snntorch.import_nir import import_from_nir
    with _quiet():
        net = import_from_nir(graph)
    neurons = [m for m in net.modules() if hasattr(m, "reset_mem")]

    def reset():
        for n in neurons:
            n.reset_mem()
        utils.reset(net)
    return net, neurons[-1], reset


def import_norse(graph):
    import nir
    supported = (nir.Input, nir.Output, nir.Affine, nir.Conv2d, nir.Flatten, nir.LIF,
                 nir.SumPool2d, nir.Linear, nir.IF, nir.CubaLIF)
    missing = sorted({type(n).__name__ for n in graph.nodes.values()
                      if not isinstance(n, supported)})
    if missing:
        return None, f"Norse 1.1's from_nir has no {', '.join(missing)}"
    with _quiet():  # importing Norse warns too (its torch.jit.script)
        from norse.torch import from_nir
        net = from_nir(graph, dt=DT)
    lifs = [m for m in net.modules() if type(m).__name__ == "LIFBoxCell"]
    return (net, lifs[-1]), None


def batched(net: torch.nn.Module) -> torch.nn.Module:
    """Let an imported graph take a batch (net, changed in place): NIR's shapes exclude the
    batch dimension, so both importers map Flatten(start_dim=0) to torch.nn.Flatten(0, -1),
    which would flatten the batch too; shifted by one dimension it flattens each image, as the
    graph means."""
    for m in net.modules():
        if isinstance(m, torch.nn.Flatten) and m.start_dim == 0:
            m.start_dim = 1
    return net


def run_imported(kind: str, imported, seq: torch.Tensor, out_thr: float, chunk: int = 250
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Output spikes and membranes [T, B, K] (our scale: out_thr is the graph's output
    threshold) of an imported graph stepped through seq [T, B, C, H, W] from rest, `chunk`
    images at a time."""
    steps, batch = seq.shape[:2]
    spk = []
    mem = []
    if kind == "snntorch":
        net, out_neuron, reset = imported
        # snnTorch's importer divides the threshold by r*dt/tau = 1 - beta: its membrane is ours
        # times 1/(1 - beta); the tie-break of the count readouts reads ours
        rec = _Membrane(out_neuron, "snntorch", float(out_thr / out_neuron.threshold))
    else:
        net, out_neuron = imported
        rec = _Membrane(out_neuron, "norse")
    batched(net)
    try:
        with torch.no_grad(), _quiet():
            for b in range(0, batch, chunk):
                rec.start()
                if kind == "snntorch":
                    reset()
                state = None
                outs = []
                for t in range(steps):
                    x = seq[t, b:b + chunk]
                    out, state = net(x, state) if kind == "norse" else net(x)
                    outs.append(out.detach())
                spk.append(torch.stack(outs))
                mem.append(torch.stack(rec.values))
    finally:
        rec.handle.remove()
    return torch.cat(spk, 1), torch.cat(mem, 1)


def encoded_slice(cfg, images: int, seed: int = 0):
    """The first `images` test images and labels, encoded once by the run's encoder."""
    from .build import build_encoder
    from .data import load_splits
    data = load_splits(cfg)
    x, y = data.test_x[:images], data.test_y[:images]
    torch.manual_seed(seed)
    seq = build_encoder(cfg)(x, num_steps=effective_timesteps(cfg))
    return seq.contiguous(), y


def verify(cfg, model, graph, seq: torch.Tensor, y: torch.Tensor,
           importers=("snntorch", "norse")) -> Dict[str, Any]:
    """Agreement of the re-imported graph with our model on the encoded inputs seq."""
    from .models import predict
    readout = model_settings(cfg.model).readout
    with torch.no_grad():
        spk, mem = model(seq)
    ours = predict(readout, spk, mem)
    report: Dict[str, Any] = {"images": int(seq.shape[1]), "timesteps": int(seq.shape[0]),
                              "ours_acc": float((ours == y).float().mean())}
    for kind in importers:
        if kind == "snntorch":
            imported, why = import_snntorch(graph), None
        else:
            imported, why = import_norse(graph)
        if imported is None:
            report[kind] = {"supported": False, "why": why}
            continue
        out_thr = float(np.unique(graph.nodes[last_lif(graph)].v_threshold)[0])
        ispk, imem = run_imported(kind, imported, seq, out_thr)
        theirs = predict(readout, ispk, imem)
        differ = int((ispk != spk).sum())
        report[kind] = {
            "supported": True,
            "spikes_equal": 1.0 - differ / spk.numel(),
            "spike_entries": int(spk.numel()),
            "spike_entries_differing": differ,
            "class_equal": float((theirs == ours).float().mean()),
            "images_differing": int((theirs != ours).sum()),
            "acc": float((theirs == y).float().mean()),
            "output_spikes_ours": int(spk.sum()),
            "output_spikes_imported": int(ispk.sum()),
        }
    return report
