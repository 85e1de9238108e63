"""Measurements: timed rounds of one case, the matmul peak, dense FLOPs, peak RSS, accuracy."""
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader
from torchvision import datasets

from snn_sweep.energy import dense_macs

from .cases import BATCH, CASES, PEER_NAMES, RATIO_SUFFIX, SIDES, Case, compose_cfg, event_splits
from .peers import PEERS
from .sides import CPU, Ours, TensorTutorial, UserBuilt, batch_order
from .tutorial import Reference

PEAK_REPEATS = 5  # torch.mm calls per peak measurement
ROOT = Path(__file__).resolve().parents[1]  # the project root, bench/'s parent


# ------------------------------------------------------------------- FLOPs and the peak
def matmul_peak_gflops(n: int = 2048) -> float:
    """This machine's fp32 peak as torch reaches it: the best of a few n x n matmuls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(PEAK_REPEATS):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def train_flops_per_sample(ours: Ours) -> float:
    """Dense FLOPs of one training sample: ours' multiply-accumulates per sample and step as the
    trainer counts them (energy.dense_macs, its macs_per_sample), over all steps, x 2 FLOPs x 3
    (forward + backward). Dense: a time-constant input or a sparse spike train counts in full,
    whatever a side skips."""
    macs = dense_macs(ours.model, ours.runner.example(ours.data.test_x[:1]))
    return 6.0 * (ours.runner.steps or 1) * sum(macs)


# ------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a GPU (its kernels run after the host's calls return)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, n: int, device: torch.device = CPU):
    synchronize(device)
    t0 = time.perf_counter()
    samples = sum(fn() for _ in range(n))
    synchronize(device)
    return samples, time.perf_counter() - t0


def bench_case(case: Case, data_root: str, data, batches: int, rounds: int,
               eval_samples: int, peers: Dict[str, object], notes: Optional[List[str]] = None
               ) -> Dict:
    """One case's row, on the device its data is on; notes gets a line on how a peer ran
    where that is not said in advance (Norse compiled or not)."""
    cfg = compose_cfg(case, data_root)
    device = data.train_x.device
    if case.events:  # its own synthetic frames, in place of MNIST
        data = event_splits(case, tuple(cfg.data.shape), device=device)
    eval_n = min(eval_samples, len(data.test_x))
    sides = {"ours": Ours(case, data_root, data, device)}
    if case.others:
        sides["ref"] = Reference(case, cfg, data_root, device)
    if case.others or case.events:
        sides["tensor"] = TensorTutorial(case, cfg, data)
    if case.model != "ann" and case.others:  # the peers are SNN libraries
        for name, lib in peers.items():
            sides[name] = PEERS[name][1](case, cfg, data, lib)
        sides["byo"] = UserBuilt(case, data_root, data, device)
        if "norse" in sides and notes is not None:
            notes.append(f"norse on {case.name}: {sides['norse'].mode}")
    if case.base is not None:
        sides["base"] = Ours(CASES[case.base], data_root, data, device)
    for side in sides.values():  # warm-up: allocator, first-call costs
        side.train_batch()
        side.evaluate(min(eval_n, BATCH))
    per_round = max(1, batches // rounds)
    sides["ours"].augment_s, ours_train_s = 0.0, 0.0
    rates: Dict[Tuple[str, str], List[float]] = {(s, k): [] for s in sides
                                                 for k in ("train", "eval")}
    order = list(sides)
    for _ in range(rounds):  # alternate so that load changes on the machine hit every side
        for name in order:
            n, t = timed(sides[name].train_batch, per_round, device)
            rates[name, "train"].append(n / t)
            ours_train_s += t if name == "ours" else 0.0
        for name in order:
            n, t = timed(lambda: sides[name].evaluate(eval_n), 1, device)
            rates[name, "eval"].append(n / t)
        order.reverse()  # and no side always goes first

    row: Dict = {"case": case.name, "model": case.model,
                 "encoder": case.encoder if case.model != "ann" else "-",
                 "timesteps": case.steps if case.model != "ann" else "-"}
    present = [p for p in PEER_NAMES if p in sides]
    for kind in ("train", "eval"):
        for name in SIDES:
            row[f"{kind}_{name}"] = round(statistics.median(rates[name, kind]), 1) \
                if name in sides else ""
        ours = rates["ours", kind]
        others = {name: rates[name, kind] for name in ("ref", "tensor", *present, "byo", "base")
                  if name in sides}
        if present:  # per round, the fastest peer of that round
            others["peer"] = [max(r) for r in zip(*(rates[p, kind] for p in present))]
        for name, suffix in RATIO_SUFFIX.items():
            row[f"{kind}_ratio{suffix}"] = round(statistics.median(
                o / t for o, t in zip(ours, others[name])), 2) if name in others else ""
    row["augment_frac"] = round(sides["ours"].augment_s / ours_train_s, 3) \
        if sides["ours"].runner.augment is not None else ""
    row["train_gflops_ours"] = round(
        train_flops_per_sample(sides["ours"]) * row["train_ours"] / 1e9, 1)
    return row


def peak_rss_mib() -> float:
    """This process's peak resident set. Linux keeps ru_maxrss across fork+exec (a child
    would report its parent's peak), so VmHWM of the process's own memory map comes first."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / (1024 if sys.platform == "darwin" else 1)  # macOS: bytes, else KiB


def memory_child(which: str, steps: int, data_root: str, batches: int) -> None:
    """Runs in a fresh process: train `batches` batches, print peak RSS in MiB."""
    case = Case(f"rate{steps}", "snn", "rate", steps)
    runner = Ours(case, data_root) if which == "ours" else \
        Reference(case, compose_cfg(case, data_root), data_root)
    loaded = peak_rss_mib()
    for _ in range(batches):
        runner.train_batch()
    print(f"RSS {loaded:.0f} {peak_rss_mib():.0f}")


def memory_case(steps: int, data_root: str, batches: int) -> Dict:
    row: Dict = {"case": f"memory_rate{steps}_batch{BATCH}"}
    for which in ("ours", "ref"):
        # from the project root, where `-m bench` finds this package
        out = subprocess.run([sys.executable, "-m", "bench", "--data-root",
                              os.path.abspath(data_root), "--memory-child", which,
                              "--memory-steps", str(steps), "--batches", str(batches)],
                             cwd=ROOT, capture_output=True, text=True)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RSS ")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"memory subprocess failed:\n{out.stderr[-2000:]}")
        loaded, peak = (float(v) for v in lines[-1].split()[1:])
        row[f"peak_rss_mib_{which}"] = round(peak)
        row[f"after_data_rss_mib_{which}"] = round(loaded)
    return row


def readout_accuracy(forward, batches, device: torch.device = CPU) -> Dict[str, float]:
    """Test accuracy read from the output membrane (mean over steps, this project's
    membrane_ce readout) and from output spike counts (tutorial 5's readout)."""
    n = by_mem = by_count = 0
    with torch.no_grad():
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            spk, mem = forward(x)
            n += len(y)
            by_mem += int((mem.mean(0).argmax(-1) == y).sum())
            by_count += int((spk.sum(0).argmax(-1) == y).sum())
    return {"membrane": by_mem / n, "spike_count": by_count / n}


def accuracy(data_root: str, device: torch.device = CPU) -> Dict:
    """One epoch on all 60k training images, seed 0, batch 128, default SNN (rate, T=25);
    accuracy on the 10k test images with both readouts. Ours reads the same images as tensors,
    in its own shuffled order."""
    case = CASES["rate25"]
    torch.manual_seed(0)
    ref = Reference(case, compose_cfg(case, data_root), data_root, device)
    t0 = time.perf_counter()
    for _ in range(len(ref.train_loader)):
        ref.train_batch()
    synchronize(device)
    ref_time = time.perf_counter() - t0
    ref.net.eval()
    ref_acc = readout_accuracy(lambda x: ref.net(ref.encode(x)),
                               DataLoader(ref.test_loader.dataset, batch_size=1000), device)

    ours = Ours(case, data_root, device=device)
    d = ours.data
    full = datasets.MNIST(data_root, train=True)  # all 60k, as the reference trains on
    d.train_x = full.data.unsqueeze(1).float().div_(255.0).to(device)
    d.train_y = full.targets.to(device)
    ours.perm = batch_order(len(d.train_x), ours.gen, device)
    t0 = time.perf_counter()
    for _ in range(len(d.train_x) // BATCH):
        ours.train_batch()
    synchronize(device)
    ours_time = time.perf_counter() - t0
    ours.model.eval()
    ours_acc = readout_accuracy(ours.runner.forward,
                                zip(d.test_x.split(1000), d.test_y.split(1000)), device)
    return {"case": "accuracy_rate25_1epoch",
            "test_acc_membrane_ours": round(ours_acc["membrane"], 4),
            "test_acc_membrane_ref": round(ref_acc["membrane"], 4),
            "test_acc_spike_count_ours": round(ours_acc["spike_count"], 4),
            "test_acc_spike_count_ref": round(ref_acc["spike_count"], 4),
            "epoch_s_ours": round(ours_time, 1), "epoch_s_ref": round(ref_time, 1)}
