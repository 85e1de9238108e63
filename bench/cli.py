"""The command line (python -m bench): runs the cases, writes tables and verdicts."""
import argparse
import os
import sys
from typing import List, Optional

import torch

from snn_sweep.errors import InputError
from snn_sweep.data import load_splits
from snn_sweep.rundir import write_csv

from . import __doc__ as PACKAGE_DOC
from . import measure
from .cases import BATCH, CASES, MEMORY_CASE, QUICK, RATIO_SUFFIX, compose_cfg
from .measure import accuracy, bench_case, matmul_peak_gflops, memory_case, memory_child
from .peers import SpikingJellyPeer, find_peers, library_versions
from .report import LEGEND, machine, markdown, print_table, tables, verdicts


def bench_device(name: str) -> torch.device:
    """--device: cpu, cuda or cuda:N; a CUDA device this machine lacks ends the bench in one
    line (exit status 1)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        sys.exit(f"error: --device {name}: not a device the bench runs on; use cpu, cuda or "
                 "cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        sys.exit(f"error: --device {name}: no CUDA device {device.index or 0} visible here "
                 f"({count} CUDA device(s)); use --device cpu")
    return device


def gpu_notes(device: torch.device, names: List[str], peers) -> List[str]:
    """The header's lines on a GPU: what is skipped, and SpikingJelly's implementation."""
    notes = [f"on {device}: the CPU-only parts skipped (the T={MEMORY_CASE.steps} memory "
             "check, the fp32 matmul peak and peak_frac, the thread count)"]
    if "spikingjelly" in peers:
        used = {SpikingJellyPeer.implementation(peers["spikingjelly"], CASES[n], device)
                for n in names if CASES[n].model != "ann" and CASES[n].others}
        notes += [f"spikingjelly on {device}: {u}" for u in sorted(used)]
    return notes


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench",
                                description=PACKAGE_DOC.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated, from: {', '.join(CASES)}")
    p.add_argument("--batches", type=int, default=24, help="timed training batches per side")
    p.add_argument("--rounds", type=int, default=6, help="alternations of all sides")
    p.add_argument("--eval-samples", type=int, default=2000, help="per round and side")
    p.add_argument("--out", default="bench_results/bench.csv")
    p.add_argument("--device", default="cpu",
                   help="where every side runs: cpu, cuda or cuda:N (on a GPU the CPU-only "
                        "parts are skipped: the memory check, the matmul peak, the threads)")
    p.add_argument("--quick", action="store_true", help=f"cases {','.join(QUICK)}, fewer batches")
    p.add_argument("--no-peers", action="store_true", help="leave SpikingJelly and Norse out")
    p.add_argument("--no-memory", action="store_true",
                   help=f"skip the T={MEMORY_CASE.steps} memory check")
    p.add_argument("--accuracy", action="store_true",
                   help="also train both for one epoch and compare test accuracy (~1.5 min)")
    p.add_argument("--memory-child", choices=["ours", "ref"], help=argparse.SUPPRESS)
    p.add_argument("--memory-steps", type=int, default=MEMORY_CASE.steps, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.memory_steps, args.data_root, args.batches)
        return 0
    names = QUICK if args.quick else [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    batches, rounds = (4, 2) if args.quick else (args.batches, args.rounds)
    device = bench_device(args.device)
    cpu = device.type == "cpu"
    try:  # on a GPU the splits move there once, as loop.fit does
        data = load_splits(compose_cfg(CASES["rate25"], args.data_root)).to(device)
    except InputError as e:  # a wrong --data-root: one line, no traceback
        sys.exit(f"error: --data-root {args.data_root}: {e}")
    peers, notes = ({}, ["peers left out (--no-peers)"]) if args.no_peers else find_peers()
    notes += [] if cpu else gpu_notes(device, names, peers)
    header = [machine(device), *([f"peers: {library_versions(peers)}"] if peers else []),
              *notes]
    print("\n".join(header), flush=True)
    peak = matmul_peak_gflops() if cpu else None
    rows = []
    for name in names:
        case_notes: List[str] = []
        rows.append(bench_case(CASES[name], args.data_root, data, batches, rounds,
                               args.eval_samples, peers, case_notes))
        if not cpu:  # how Norse ran there: compiled or not
            print("\n".join(case_notes), flush=True)
            header += case_notes
        r = rows[-1]
        print(f"  {name}: " + "; ".join(
            f"{kind} " + ", ".join(f"x{r[f'{kind}_ratio{suffix}']} {side}"
                                   for side, suffix in RATIO_SUFFIX.items()
                                   if side in ("ref", "tensor", "peer", "base")
                                   and r[f"{kind}_ratio{suffix}"] != "")
            for kind in ("train", "eval")), flush=True)
        if cpu:  # again after each case: on a shared machine the best measurement is the peak
            peak = max(peak, matmul_peak_gflops())
    for r in rows:
        r["peak_frac"] = round(r["train_gflops_ours"] / peak, 3) if cpu else ""
    header.append(f"fp32 matmul peak: {peak:.1f} GFLOP/s (the best torch.mm 2048x2048 of "
                  f"{measure.PEAK_REPEATS * (len(rows) + 1)}); batch {BATCH}" if cpu
                  else f"batch {BATCH}")
    print(header[-1])
    for table in tables(rows):
        print()
        print_table(table)
    extra = []
    if not args.no_memory and cpu:
        extra.append(memory_case(MEMORY_CASE.steps, args.data_root, 2 if args.quick else 3))
    if args.accuracy:
        extra.append(accuracy(args.data_root, device))
    for row in extra:
        print()
        print_table([row])
    lines = verdicts(rows, extra, bool(peers), device.type)
    print("\n" + "\n".join(lines))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    write_csv(args.out, rows)
    for row in extra:
        write_csv(os.path.splitext(args.out)[0] + f"_{row['case'].split('_')[0]}.csv", [row])
    md = os.path.splitext(args.out)[0] + ".md"
    with open(md, "w") as f:
        command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
        f.write("".join(f"{line}  \n" for line in header)
                + f"Command: `{command}`  \n{LEGEND} Measured in one process, alternating in "
                f"{rounds} rounds.\n")
        for table in tables(rows):
            f.write("\n" + markdown(table))
        for row in extra:
            f.write("\n" + markdown([row]))
        f.write("\nTargets on this machine:\n\n" + "".join(f"- {v}\n" for v in lines))
    print(f"\nwrote {args.out} and {md}")
    return 0
