"""The output: the machine line, tables (printed, Markdown), verdicts against targets.yaml."""
import os
import platform
from typing import Dict, List

import snntorch as snn
import torch

from .cases import (CONV_MODELS, CSNN_PEER_TARGET, CUDA_SJ_TARGET, CUDA_TARGETS, EVAL_TARGET,
                    MEMORY_CASE, MEMORY_LIMIT_MIB, TARGETS)


def machine(device: torch.device = torch.device("cpu")) -> str:
    """The machine line: the CPU (and its threads), or the GPU and its host's CPU."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        return (f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}) on a host "
                f"with {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, snntorch "
                f"{snn.__version__}, Python {platform.python_version()}")
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), snntorch {snn.__version__}, "
            f"Python {platform.python_version()}")


def verdicts(rows: List[Dict], extra: List[Dict], peers_found: bool,
             device_type: str = "cpu") -> List[str]:
    """A line per target that applies to what ran, ending in met or MISSED; on a CUDA device
    targets.yaml's cuda section instead."""
    if device_type == "cuda":
        targets = list(CUDA_TARGETS)
        targets += [(r["case"], "train_ratio_spikingjelly", ">=", CUDA_SJ_TARGET) for r in rows
                    if r["model"] != "ann"]
    else:
        targets = list(TARGETS)
        targets += [(r["case"], "train_ratio_peer", ">=", CSNN_PEER_TARGET) for r in rows
                    if r["model"] in CONV_MODELS]
        targets += [(r["case"], col, ">=", EVAL_TARGET) for r in rows
                    for col in ("eval_ratio", "eval_ratio_peer")]
    lines = []
    for case, col, op, bound in targets:
        hit = [r for r in rows if r["case"] == case]
        if not hit or hit[0].get(col, "") == "":
            continue  # not run, or no peer (the ann has none)
        value = hit[0][col]
        ok = value >= bound if op == ">=" else value <= bound
        lines.append(f"target {case} {col} {op} {bound}: {value} {'met' if ok else 'MISSED'}")
    if not peers_found:
        lines.append("targets against the peers: not checked (no peer measured)")
    for row in extra:
        if "peak_rss_mib_ours" in row:
            ok = row["peak_rss_mib_ours"] <= MEMORY_LIMIT_MIB
            lines.append(f"target T={MEMORY_CASE.steps} training peak RSS <= "
                         f"{MEMORY_LIMIT_MIB} MiB: {row['peak_rss_mib_ours']} "
                         f"{'met' if ok else 'MISSED'}")
    return lines


def tables(rows: List[Dict]) -> List[List[Dict]]:
    """The case rows as two tables: throughput, then ratios and the peak fraction."""
    head = ("case", "model", "encoder", "timesteps")
    speed = [k for k in rows[0] if k not in head and "ratio" not in k
             and k not in ("augment_frac", "train_gflops_ours", "peak_frac")]
    ratio = [k for k in rows[0] if "ratio" in k] + ["augment_frac", "train_gflops_ours",
                                                     "peak_frac"]
    return [[{k: r[k] for k in (*head, *speed)} for r in rows],
            [{k: r[k] for k in ("case", *ratio)} for r in rows]]


def markdown(rows: List[Dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(rows: List[Dict]) -> None:
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.rjust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).rjust(width[c]) for c in cols))


LEGEND = ("Throughput in samples/s, the median over rounds. Sides: ours; ref, the snnTorch "
          "tutorial loop with its DataLoader; tensor, the same loop fed the tensors ours reads; "
          "spikingjelly and norse, the same network in each library's idiom, fed the tensor "
          "loop's spike trains; byo, the same network written by a user with snn_sweep.nn; base, "
          "ours on the case named in the case's base (the same network without its dropout or "
          "augmentation). "
          "Ratios: ours / that side (ratio alone: ours / ref; peer: "
          "ours / the fastest peer), the median of per-round ratios. train_gflops_ours: dense "
          "training FLOPs per sample x our samples/s; peak_frac: that / the fp32 matmul peak "
          "(above 1 where ours skips work the dense count includes: zeros in spike trains, a "
          "time-constant input computed once). augment_frac: the share of ours' training time spent "
          "in the augmentation itself.")
