"""Export a run's best-epoch network to NIR and check it by re-importing it (reimport.py).

`python -m snn_sweep.export RUN_DIR [--out FILE]`: the network as a NIR graph (the
Neuromorphic Intermediate Representation, `nir`), checked by re-importing it;
`--study URL [--name STUDY] --out-dir DIR` exports every trial on a study's front, each file
named by its trial. The graph and its semantics: snn_sweep/nir_graph.py.

`batched(net)`: a graph read back with snnTorch's import_from_nir (or Norse's from_nir) made to
take a batch [B, C, H, W] (docs/export.md#reading-the-file-back).
"""
import argparse
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from .build import launch_dir_importable
from .errors import InputError, one_line
from .nir_graph import describe, metadata_for_nir, need_nir, to_nir
from .reimport import batched, encoded_slice, verify

__all__ = ["batched", "export_run", "load_run", "main"]


def load_run(run_dir: str, data_root: Optional[str] = None):
    """(config, model with the checkpoint's weights) of a spiking run; InputError otherwise."""
    from .load import load_run as load
    run = load(run_dir, data_root)
    if not run.cfg.model.spiking:
        raise InputError(f"{run_dir}: model={run.cfg.model.name} is not spiking; only spiking "
                         f"models export to NIR")
    return run.cfg, run.model


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
    from hydra_plugins.snn_sweep_optuna_sweeper.storage import public_storage

    from .studies import load_study
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
    """`python -m snn_sweep.export` and the console script `snn-sweep-export`."""
    launch_dir_importable()  # a run of the user's own network imports it from this folder
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
    with one_line():
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


if __name__ == "__main__":
    main()
