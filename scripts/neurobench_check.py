"""Our counts (snn_sweep/energy.py) beside NeuroBench's own Benchmark, on run dirs' checkpoints.

    python scripts/neurobench_check.py DIR ... [--data-root R] [--images N] [--write FILE]

For each completed run with a checkpoint under the DIRs: its model counted by our hooks on its
own layers, and by NeuroBench 2.3's Benchmark on a copy stepped in plain PyTorch (its own
nn.Linear / nn.Conv2d, pooling, BatchNorm and snnTorch neurons, called step by step as
snnTorch's tutorials write it, so that NeuroBench's hooks see real layers), on the same first N
test images, encoded once for both; a Markdown table of both sides' figures per sample and
their largest difference (`difference`; tests/test_neurobench.py asserts equality on tiny
runs).
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional

import torch
from neurobench.benchmarks import Benchmark
from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
from neurobench.metrics.workload import (ActivationSparsity, ClassificationAccuracy,
                                         MembraneUpdates, SynapticOperations)
from neurobench.models import SNNTorchModel, TorchModel
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snn_sweep
from snn_sweep.data import load_splits
from snn_sweep.encoders import frame_counts
from snn_sweep.energy import Recorder, static_metrics
from snn_sweep.models import pool_layer
from snn_sweep.nn import ConvPool, Neurons, Synapses
from snn_sweep.runner import Runner

# (our field, NeuroBench's: a key of its results, or (key, subkey)); the counts must be equal,
# the ratios (sparsities) equal within float rounding
COUNTS = {"effective_acs_per_sample": ("SynapticOperations", "Effective_ACs"),
          "effective_macs_per_sample": ("SynapticOperations", "Effective_MACs"),
          "dense_ops_per_sample": ("SynapticOperations", "Dense"),
          "membrane_updates_per_sample": "MembraneUpdates",
          "footprint_bytes": "Footprint", "n_params": "ParameterCount"}
RATIOS = {"activation_sparsity": "ActivationSparsity", "connection_sparsity": "ConnectionSparsity"}


# NeuroBench sums a layer's operations of a batch in float32, exact below 2**24: small batches
# keep its counts exact (ours are summed in float64).
NEUROBENCH_BATCH = 16


def theirs_of(theirs: dict, key) -> float:
    return theirs[key[0]][key[1]] if isinstance(key, tuple) else theirs[key]


STATIC = ("footprint_bytes", "n_params")
TOLERANCE = 1e-6


def difference(ours: dict, theirs: dict) -> float:
    """The largest relative difference of the workload counts and absolute one of the
    activation sparsity. Both sides count by one definition, but compute the membranes with
    other float arithmetic (fused kernels over all steps against snnTorch's step, matmuls of
    other shapes): over millions of neurons and steps a membrane at the threshold may fire on
    one side only, and that spike's operations and membrane updates differ. On small data
    they are equal (tests/test_neurobench.py asserts it)."""
    rel = [abs(ours[k] - theirs_of(theirs, v)) / max(abs(theirs_of(theirs, v)), 1)
           for k, v in COUNTS.items() if k not in STATIC]
    return max(rel + [abs(ours["activation_sparsity"] - theirs["ActivationSparsity"])])


def agree(ours: dict, theirs: dict) -> bool:
    """The static counts equal, the workload ones within TOLERANCE (difference), connection
    sparsity within NeuroBench's rounding (4 decimals)."""
    return all(ours[k] == theirs_of(theirs, COUNTS[k]) for k in STATIC) and \
        difference(ours, theirs) <= TOLERANCE and \
        abs(ours["connection_sparsity"] - theirs["ConnectionSparsity"]) < 5e-5


class Stepped(nn.Module):
    """A snn_sweep.nn model's own submodules called step by step, as snnTorch's tutorials
    write it, so that NeuroBench's hooks see real layers: x [B, T, ...] -> spikes [T, B, K]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.synapses = [m for m in model.modules() if isinstance(m, Synapses)]
        self.neurons = [m.neuron for m in model.modules() if isinstance(m, Neurons)]
        self.pools = [pool_layer(s.pool) if isinstance(s, ConvPool) else None
                      for s in self.synapses]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for neuron in self.neurons:
            neuron.reset_mem()
        out = []
        for t in range(x.shape[1]):
            h = x[:, t]
            for syn, pool, neuron in zip(self.synapses, self.pools, self.neurons):
                if pool is not None:
                    h = pool(syn.layer(h))
                    h = syn.norm(h) if syn.norm is not None else h
                else:
                    h = syn.layer(h.flatten(1))
                h = neuron(h)[0]
            out.append(h)
        return torch.stack(out)




class _Plain(nn.Module):
    """A network that steps itself (tutorial_net.Net): x [B, T, ...] -> its spikes [T, B, K]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.transpose(0, 1))[0]




def ours_and_neurobench(model: nn.Module, net: nn.Module, inputs: torch.Tensor, ours_x, y,
                        spiking: bool):
    """(our Recorder's stats and static metrics, NeuroBench's results) of model on inputs:
    ours_x is what our model takes (the same values), net what NeuroBench steps."""
    with torch.no_grad(), Recorder(model) as rec:
        model(ours_x)
    ours = {**rec.stats(len(y), 1), **static_metrics(model)}
    loader = DataLoader(TensorDataset(inputs, y), batch_size=NEUROBENCH_BATCH)
    wrapped = SNNTorchModel(net, custom_forward=True) if spiking else TorchModel(net)
    post = (lambda p: p.sum(1).argmax(-1)) if spiking else (lambda p: p.argmax(-1))
    theirs = Benchmark(wrapped, loader, [], [post], [
        [Footprint, ConnectionSparsity, ParameterCount],
        [ActivationSparsity, MembraneUpdates, SynapticOperations, ClassificationAccuracy],
    ]).run(quiet=True)
    return ours, theirs




def compare_run(run_dir: str, data_root: Optional[str] = None, images: Optional[int] = None,
                prepare: Callable[[nn.Module], None] = lambda model: None):
    """(ours, NeuroBench's) on the run's checkpoint and its test set (the first `images`),
    encoded once for both sides; prepare(model) first, if given (the test silences units)."""
    run = snn_sweep.load_run(run_dir, data_root)
    model, cfg = run.model, run.cfg
    prepare(model)
    data = load_splits(cfg)
    x, y = data.test_x[:images].float(), data.test_y[:images]
    runner = Runner(cfg, model, torch.device("cpu"))
    if runner.steps is None:  # an ANN: what it sees (event data: the frames summed)
        x = frame_counts(x) if runner.frames else x
        return ours_and_neurobench(model, model, x, x, y, spiking=False)
    torch.manual_seed(0)
    encoded = runner.encode(x, num_steps=runner.steps)  # [T, B, ...], one draw for both sides
    net = Stepped(model) if any(isinstance(m, Synapses) for m in model.modules()) else \
        _Plain(model)
    return ours_and_neurobench(model, net, encoded.transpose(0, 1).contiguous(), encoded, y,
                               spiking=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--data-root", help="where the runs' data set is now, if it moved")
    p.add_argument("--images", type=int, default=1000, help="test images (or recordings)")
    p.add_argument("--write", type=Path)
    a = p.parse_args(argv)
    runs = sorted({r.parent for d in a.dirs for r in d.rglob("result.json")
                   if (r.parent / "checkpoint.pt").is_file()})
    if not runs:
        sys.exit(f"error: no run dir with result.json and checkpoint.pt under {a.dirs}")
    shown = ["effective_acs_per_sample", "effective_macs_per_sample", "dense_ops_per_sample",
             "membrane_updates_per_sample", "activation_sparsity", "footprint_bytes"]
    lines = [f"Command: `python scripts/neurobench_check.py {' '.join(map(str, a.dirs))} "
             f"--images {a.images}`; per sample on the first {a.images} test images, ours / "
             "NeuroBench 2.3's Benchmark.", "",
             "| run | model | encoder | " + " | ".join(s.replace("_per_sample", "")
                                                      for s in shown)
             + f" | largest difference | agree (<= {TOLERANCE:g}) |",
             "|---|---|---|" + "---:|" * len(shown) + "---:|---|"]
    ok = True
    for run in runs:
        record = json.loads((run / "result.json").read_text())
        ours, theirs = compare_run(str(run), a.data_root, a.images)
        same = agree(ours, theirs)
        ok &= same
        keys = {**COUNTS, **RATIOS}
        cells = [f"{ours[k]:.6g} / {theirs_of(theirs, keys[k]):.6g}" for k in shown]
        lines.append(f"| {run.relative_to(run.parents[1]) if len(run.parents) > 1 else run} | "
                     f"{record.get('model')} | {record.get('encoder') or '-'} | "
                     + " | ".join(cells) + f" | {difference(ours, theirs):.2g} | "
                     f"{'yes' if same else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.write:
        a.write.parent.mkdir(parents=True, exist_ok=True)
        a.write.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
