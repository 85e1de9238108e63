"""Export a run's best-epoch network to NIR and check it by re-importing it.

`python -m snn_sweep.export RUN_DIR [--out FILE]`: the network as a NIR graph (the
Neuromorphic Intermediate Representation, `nir`), checked by re-importing it;
`--study URL [--name STUDY] --out-dir DIR` exports every trial on a study's front, each file
named by its trial. The graph and its semantics: snn_sweep/nir_graph.py.

The check (`verify`): the test slice is encoded once with the run's encoder (seed 0); our model
and the re-imported graph (snnTorch's import_from_nir; Norse's from_nir where it imports every
node) run on the same spikes, the latter step by step, a batch of images at a time
(`batched`); their output spikes per (image, step, neuron) and predicted classes are compared.
"""
import argparse
import contextlib
import io
import logging
import os
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .config import InputError, effective_timesteps, model_settings
from .nir_graph import DT, describe, last_lif, metadata_for_nir, need_nir, to_nir

def load_run(run_dir: str, data_root: Optional[str] = None):
    """(config, model with the checkpoint's weights) of a spiking run; InputError otherwise."""
    from .load import load_run as load
    run = load(run_dir, data_root)
    if not run.cfg.model.spiking:
        raise InputError(f"{run_dir}: model={run.cfg.model.name} is not spiking; only spiking "
                         f"models export to NIR")
    return run.cfg, run.model


# --- graph -----------------------------------------------------------------------------------

# --- re-import and compare -------------------------------------------------------------------

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
    from norse.torch import from_nir
    with _quiet():
        net = from_nir(graph, dt=DT)
    lifs = [m for m in net.modules() if type(m).__name__ == "LIFBoxCell"]
    return (net, lifs[-1]), None


def batched(net) -> None:
    """Let an imported graph take a batch: NIR's shapes exclude the batch dimension, so both
    importers map Flatten(start_dim=0) to torch.nn.Flatten(0, -1), which would flatten the
    batch too; shifted by one dimension it flattens each image, as the graph means."""
    for m in net.modules():
        if isinstance(m, torch.nn.Flatten) and m.start_dim == 0:
            m.start_dim = 1


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


# --- the command -----------------------------------------------------------------------------

def export_run(run_dir: str, out: Optional[str] = None, images: int = 1000,
               importers=("snntorch", "norse"), log: Callable[[str], None] = print,
               data_root: Optional[str] = None) -> Dict[str, Any]:
    """Write RUN_DIR's NIR graph (default RUN_DIR/model.nir) and FILE.json beside it, and
    record the agreement in RUN_DIR/export.json; returns that record."""
    need_nir()
    import nir
    from .rundir import write_json
    cfg, model = load_run(run_dir, data_root)
    meta = describe(cfg)
    graph = to_nir(cfg, model, metadata_for_nir(meta))
    out = out or os.path.join(run_dir, "model.nir")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    nir.write(out, graph)
    record: Dict[str, Any] = {"run_dir": os.path.abspath(run_dir), "nir": os.path.abspath(out),
                              **meta, "nodes": {k: type(v).__name__ for k, v in graph.nodes.items()}}
    if images > 0:
        seq, y = encoded_slice(cfg, images)
        back = nir.read(out)  # what is checked is the file, not the graph in memory
        record["agreement"] = verify(cfg, model, back, seq, y, importers)
    write_json(os.path.splitext(out)[0] + ".json", record)
    write_json(os.path.join(run_dir, "export.json"), record)
    log(summary(record))
    return record


def summary(record: Dict[str, Any]) -> str:
    lines = [f"wrote {record['nir']} ({' -> '.join(record['nodes'].values())}); encoder "
             f"{record['encoder']['name']} T={record['timesteps']}, readout {record['readout']}"]
    a = record.get("agreement")
    if a:
        lines.append(f"agreement on {a['images']} test images x {a['timesteps']} steps "
                     f"(ours: acc {a['ours_acc']:.4f}):")
        for kind in ("snntorch", "norse"):
            r = a.get(kind)
            if r is None:
                continue
            if not r["supported"]:
                lines.append(f"  {kind}: not checked ({r['why']})")
                continue
            lines.append(f"  {kind}: same class {r['class_equal']:.2%} "
                         f"({r['images_differing']} differ), same output spikes "
                         f"{r['spikes_equal']:.4%} of (image, step, neuron) "
                         f"({r['spike_entries_differing']} of {r['spike_entries']} differ), "
                         f"acc {r['acc']:.4f}")
    return "\n".join(lines)


def study_runs(url: str, name: Optional[str]) -> List[Tuple[str, str]]:
    """(file name, job dir) of every trial on the front of an Optuna study: its Pareto front
    with two objectives, its best trial with one; InputError naming --study otherwise."""
    from .optuna_trial import load_study, public_storage
    try:
        study = load_study(url, name, name_flag="--name")
    except ValueError as e:
        raise InputError(str(e)) from None
    name = study.study_name
    front = [t for t in study.best_trials if t.user_attrs.get("job_dir")]
    if not front:
        raise InputError(f"--study {public_storage(url)} --name {name}: no completed trial "
                         f"with a job dir (trained by snn_sweep's Optuna sweeper) on its front")
    return [(f"{name}_trial_{t.number}", t.user_attrs["job_dir"])
            for t in sorted(front, key=lambda t: t.number)]


def table(records: List[Dict[str, Any]]) -> str:
    """A Markdown table of export records (the README's agreement table)."""
    head = ("| run | model | encoder | T | readout | images | ours acc | importer | same class "
            "| same output spikes | imported acc |\n|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for r in records:
        a = r.get("agreement") or {}
        for kind in ("snntorch", "norse"):
            x = a.get(kind)
            if not x:
                continue
            name = os.path.splitext(os.path.basename(r["nir"]))[0]
            cells = [name, r["model"], r["encoder"]["name"], str(r["timesteps"]), r["readout"],
                     str(a["images"]), f"{a['ours_acc']:.4f}", kind]
            if x["supported"]:
                cells += [f"{x['class_equal']:.2%} ({x['images_differing']} differ)",
                          f"{x['spikes_equal']:.4%} ({x['spike_entries_differing']} of "
                          f"{x['spike_entries']} differ)", f"{x['acc']:.4f}"]
            else:
                cells += [f"not checked: {x['why']}", "", ""]
            rows.append("| " + " | ".join(cells) + " |")
    return head + "\n" + "\n".join(rows) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m snn_sweep.export", description=__doc__.split(
        "\n")[0])
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR",
                   help="run dirs (result.json, checkpoint.pt, .hydra/)")
    p.add_argument("--out", help="the .nir file, for one RUN_DIR (default RUN_DIR/model.nir)")
    p.add_argument("--out-dir", help="write <name>.nir and <name>.json here, name = the run "
                   "dir's (or the trial's) name")
    p.add_argument("--study", metavar="STORAGE_URL", help="export the front of this Optuna "
                   "study (Pareto front with two objectives, best trial with one)")
    p.add_argument("--name", help="the study's name, if the storage holds several")
    p.add_argument("--images", type=int, default=1000,
                   help="test images to check the re-imported graph on (0: no check)")
    p.add_argument("--data-root", help="where the test images are (default: the run's "
                   "data.root)")
    p.add_argument("--no-norse", action="store_true", help="check with snnTorch only")
    p.add_argument("--table", help="also write the agreement as a Markdown table to this file")
    args = p.parse_args(argv)
    importers = ("snntorch",) if args.no_norse else ("snntorch", "norse")
    try:
        if args.images < 0:
            raise InputError(f"--images={args.images}: an integer >= 0")
        runs = [(os.path.basename(os.path.normpath(d)), d) for d in args.run_dirs]
        if args.study:
            runs += study_runs(args.study, args.name)
        elif args.name:
            raise InputError("--name names a study: give --study STORAGE_URL too")
        if not runs:
            raise InputError("give a RUN_DIR or --study STORAGE_URL")
        if args.out and len(runs) > 1:
            raise InputError(f"--out names one file for {len(runs)} runs: use --out-dir")
        records = []
        for name, run in runs:
            out = args.out or (os.path.join(args.out_dir, f"{name}.nir") if args.out_dir
                               else None)
            records.append(export_run(run, out, args.images, importers,
                                      data_root=args.data_root))
        if args.table:
            os.makedirs(os.path.dirname(os.path.abspath(args.table)), exist_ok=True)
            with open(args.table, "w") as f:
                f.write(table(records))
    except InputError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
