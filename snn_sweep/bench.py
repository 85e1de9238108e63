"""Throughput and memory of this project's models against a tutorial-style snnTorch loop.

    python -m snn_sweep.bench [--data-root ../shared/data] [--cases rate25,direct25] [--quick]

The reference is what snnTorch tutorial 5 teaches: a DataLoader over torchvision MNIST with a
per-sample transform (Resize, Grayscale, ToTensor, Normalize), spikegen per batch, a Python
loop over timesteps calling fc1 -> snn.Leaky -> fc2 -> snn.Leaky, the loss summed over steps,
Adam at 5e-4. Ours is built through the training code path (config composition, build_model,
encoders, readout_loss, build_optimizer, Runner.evaluate). Both have the same architecture and
read the same MNIST files; timings alternate ours/reference in rounds so that machine noise
hits both. Peak memory is the peak RSS of a fresh subprocess per case (it is process-wide).
"""
import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import snntorch as snn
import torch
from hydra import compose, initialize_config_dir
from snntorch import spikegen
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from .config import InputError, register_configs
from .data import load_splits
from .models import build_model, readout_loss
from .train import Runner, build_optimizer, keep_freed_memory, write_csv

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
BATCH = 128


@dataclass
class Case:
    name: str
    model: str  # snn | snn_single_step | ann
    encoder: str  # rate | direct | latency (ignored for the ann)
    steps: int  # 0 for the ann


CASES = {c.name: c for c in [
    *(Case(f"rate{t}", "snn", "rate", t) for t in (1, 10, 25, 50)),
    *(Case(f"direct{t}", "snn", "direct", t) for t in (1, 10, 25, 50)),
    Case("latency25", "snn", "latency", 25),
    Case("single_step", "snn_single_step", "direct", 1),
    Case("ann", "ann", "direct", 0),
]}
QUICK = ["rate25", "direct25", "ann"]
# Targets of issue 4: (case, column, minimum ratio ours / reference).
TARGETS = [("rate25", "train_ratio", 3.0), ("direct25", "train_ratio", 10.0)]
EVAL_TARGET = 3.0
MEMORY_CASE = Case("rate100", "snn", "rate", 100)


def compose_cfg(case: Case, data_root: str):
    register_configs()
    overrides = [f"model={case.model}", f"data.root={data_root}", "data.download=false",
                 "trainer.progress=false", f"data.batch_size={BATCH}"]
    if case.model != "ann":
        overrides.append(f"encoder={case.encoder}")
    if case.model == "snn":
        overrides.append(f"timesteps={case.steps}")
    with initialize_config_dir(config_dir=CONF_DIR):
        return compose("config", overrides=overrides)


# ---------------------------------------------------------------- the tutorial-style reference
class TutorialNet(nn.Module):
    """snnTorch tutorial 5's network: layers called once per step in a Python loop."""

    def __init__(self, steps: int, beta: float = 0.95):
        super().__init__()
        self.steps = steps
        self.fc1 = nn.Linear(784, 1000)
        self.lif1 = snn.Leaky(beta=beta)
        self.fc2 = nn.Linear(1000, 10)
        self.lif2 = snn.Leaky(beta=beta)

    def forward(self, x):  # x [T, B, 784]
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for step in range(self.steps):
            cur1 = self.fc1(x[step])
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


class Reference:
    """Training and evaluation as the tutorial writes them, for one case."""

    def __init__(self, case: Case, data_root: str, train: bool = True):
        tf = transforms.Compose([transforms.Resize((28, 28)), transforms.Grayscale(),
                                 transforms.ToTensor(), transforms.Normalize((0,), (1,))])
        self.case = case
        self.train_loader = DataLoader(datasets.MNIST(data_root, train=True, transform=tf),
                                       batch_size=BATCH, shuffle=True, drop_last=True)
        self.test_loader = DataLoader(datasets.MNIST(data_root, train=False, transform=tf),
                                      batch_size=BATCH, shuffle=True, drop_last=True)
        self.train_iter = iter(self.train_loader)
        self.test_iter = iter(self.test_loader)
        if case.model == "ann":
            self.net = nn.Sequential(nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 10))
        else:
            self.net = TutorialNet(case.steps)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=5e-4, betas=(0.9, 0.999))
        self.loss = nn.CrossEntropyLoss()

    def encode(self, data):
        flat = data.view(data.shape[0], -1)
        t = self.case.steps
        if self.case.encoder == "rate":
            return spikegen.rate(flat, num_steps=t)
        if self.case.encoder == "latency":
            # the same settings as conf/encoder/latency.yaml
            return spikegen.latency(flat, num_steps=t, tau=5, threshold=0.01, linear=True,
                                    normalize=True, clip=True)
        return flat.unsqueeze(0).repeat(t, 1, 1)  # tutorial 5 feeds the image every step

    @staticmethod
    def _next(loader, it):
        try:
            return it, next(it)
        except StopIteration:
            it = iter(loader)
            return it, next(it)

    def train_batch(self) -> int:
        self.train_iter, (data, targets) = self._next(self.train_loader, self.train_iter)
        self.net.train()
        if self.case.model == "ann":
            loss_val = self.loss(self.net(data.view(data.shape[0], -1)), targets)
        else:
            _, mem_rec = self.net(self.encode(data))
            loss_val = torch.zeros(1)
            for step in range(self.case.steps):
                loss_val += self.loss(mem_rec[step], targets)
        self.opt.zero_grad()
        loss_val.backward()
        self.opt.step()
        return len(targets)

    @torch.no_grad()
    def eval_batch(self, data=None, targets=None):
        if data is None:
            self.test_iter, (data, targets) = self._next(self.test_loader, self.test_iter)
        self.net.eval()
        if self.case.model == "ann":
            predicted = self.net(data.view(data.shape[0], -1)).argmax(1)
        else:
            spk_rec, _ = self.net(self.encode(data))
            predicted = spk_rec.sum(dim=0).argmax(1)  # tutorial 5: spike counts
        return len(targets), int((predicted == targets).sum())


# ------------------------------------------------------------------------------- ours
class Ours:
    """The project's pipeline for one case: the same calls train.py makes."""

    def __init__(self, case: Case, data_root: str, data=None):
        # as train.py does on the CPU; process-wide, so the reference in the same process
        # gets the same allocator (only the memory check runs each side in its own process)
        keep_freed_memory()
        self.cfg = compose_cfg(case, data_root)
        self.data = data if data is not None else load_splits(self.cfg.data)
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(self.cfg.model, self.cfg.neuron,
                                 tuple(self.data.train_x.shape[1:]), self.data.num_classes)
        self.runner = Runner(self.cfg, self.model, torch.device("cpu"))
        self.opt, _ = build_optimizer(self.cfg, self.model.parameters(), 1)
        self.gen = torch.Generator().manual_seed(self.cfg.seed)
        self.perm = torch.randperm(len(self.data.train_x), generator=self.gen)
        self.pos = 0

    def train_batch(self) -> int:
        if self.pos + BATCH > len(self.perm):
            self.perm, self.pos = torch.randperm(len(self.perm), generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + BATCH]
        self.pos += BATCH
        self.model.train()
        y = self.data.train_y[idx]
        spk, mem = self.runner.forward(self.data.train_x[idx])
        loss = readout_loss(self.runner.readout, spk, mem, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return len(y)

    def evaluate(self, n: int):
        _, acc = self.runner.evaluate(self.data.test_x[:n], self.data.test_y[:n])
        return n, acc


# ------------------------------------------------------------------------------- timing
def timed(fn, n: int):
    t0 = time.perf_counter()
    samples = sum(fn() for _ in range(n))
    return samples, time.perf_counter() - t0


def bench_case(case: Case, data_root: str, data, batches: int, rounds: int,
               eval_samples: int) -> Dict:
    ours, ref = Ours(case, data_root, data), Reference(case, data_root)
    ours.train_batch(), ref.train_batch()  # warm-up: allocator, first-call costs
    per_round = max(1, batches // rounds)
    tot = {"ours_train": [0, 0.0], "ref_train": [0, 0.0], "ours_eval": [0, 0.0],
           "ref_eval": [0, 0.0]}

    def add(key, result):
        tot[key][0] += result[0]
        tot[key][1] += result[1]

    ref_eval_batches = max(1, eval_samples // BATCH)
    ours.evaluate(min(eval_samples, 1000)), ref.eval_batch()  # warm-up
    for _ in range(rounds):  # alternate so that load changes on the machine hit both
        add("ours_train", timed(ours.train_batch, per_round))
        add("ref_train", timed(ref.train_batch, per_round))
        add("ours_eval", timed(lambda: ours.evaluate(eval_samples)[0], 1))
        add("ref_eval", timed(lambda: ref.eval_batch()[0], ref_eval_batches))
    rate = {k: n / t for k, (n, t) in tot.items()}
    return {
        "case": case.name, "model": case.model,
        "encoder": case.encoder if case.model != "ann" else "-",
        "timesteps": case.steps if case.model != "ann" else "-",
        "train_ours": round(rate["ours_train"], 1), "train_ref": round(rate["ref_train"], 1),
        "train_ratio": round(rate["ours_train"] / rate["ref_train"], 2),
        "eval_ours": round(rate["ours_eval"], 1), "eval_ref": round(rate["ref_eval"], 1),
        "eval_ratio": round(rate["ours_eval"] / rate["ref_eval"], 2),
    }


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
    runner = Ours(case, data_root) if which == "ours" else Reference(case, data_root)
    loaded = peak_rss_mib()
    for _ in range(batches):
        runner.train_batch()
    print(f"RSS {loaded:.0f} {peak_rss_mib():.0f}")


def memory_case(steps: int, data_root: str, batches: int) -> Dict:
    row: Dict = {"case": f"memory_rate{steps}_batch{BATCH}"}
    for which in ("ours", "ref"):
        out = subprocess.run([sys.executable, "-m", "snn_sweep.bench", "--data-root", data_root,
                              "--memory-child", which, "--memory-steps", str(steps),
                              "--batches", str(batches)], capture_output=True, text=True)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RSS ")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"memory subprocess failed:\n{out.stderr[-2000:]}")
        loaded, peak = (float(v) for v in lines[-1].split()[1:])
        row[f"peak_rss_mib_{which}"] = round(peak)
        row[f"after_data_rss_mib_{which}"] = round(loaded)
    return row


def readout_accuracy(forward, batches) -> Dict[str, float]:
    """Test accuracy read from the output membrane (mean over steps, this project's
    membrane_ce readout) and from output spike counts (tutorial 5's readout)."""
    n = by_mem = by_count = 0
    with torch.no_grad():
        for x, y in batches:
            spk, mem = forward(x)
            n += len(y)
            by_mem += int((mem.mean(0).argmax(-1) == y).sum())
            by_count += int((spk.sum(0).argmax(-1) == y).sum())
    return {"membrane": by_mem / n, "spike_count": by_count / n}


def accuracy(data_root: str) -> Dict:
    """One epoch on all 60k training images, seed 0, batch 128, default SNN (rate, T=25);
    accuracy on the 10k test images with both readouts. Ours reads the same images as tensors,
    in its own shuffled order."""
    case = CASES["rate25"]
    torch.manual_seed(0)
    ref = Reference(case, data_root)
    t0 = time.perf_counter()
    for _ in range(len(ref.train_loader)):
        ref.train_batch()
    ref_time = time.perf_counter() - t0
    ref.net.eval()
    ref_acc = readout_accuracy(lambda x: ref.net(ref.encode(x)),
                               DataLoader(ref.test_loader.dataset, batch_size=1000))

    ours = Ours(case, data_root)
    d = ours.data
    full = datasets.MNIST(data_root, train=True)  # all 60k, as the reference trains on
    d.train_x = full.data.unsqueeze(1).float().div_(255.0)
    d.train_y = full.targets
    ours.perm = torch.randperm(len(d.train_x), generator=ours.gen)
    t0 = time.perf_counter()
    for _ in range(len(d.train_x) // BATCH):
        ours.train_batch()
    ours_time = time.perf_counter() - t0
    ours.model.eval()
    ours_acc = readout_accuracy(ours.runner.forward,
                                zip(d.test_x.split(1000), d.test_y.split(1000)))
    return {"case": "accuracy_rate25_1epoch",
            "test_acc_membrane_ours": round(ours_acc["membrane"], 4),
            "test_acc_membrane_ref": round(ref_acc["membrane"], 4),
            "test_acc_spike_count_ours": round(ours_acc["spike_count"], 4),
            "test_acc_spike_count_ref": round(ref_acc["spike_count"], 4),
            "epoch_s_ours": round(ours_time, 1), "epoch_s_ref": round(ref_time, 1)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), snntorch {snn.__version__}, "
            f"Python {platform.python_version()}")


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


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated, from: {', '.join(CASES)}")
    p.add_argument("--batches", type=int, default=24, help="timed training batches per side")
    p.add_argument("--rounds", type=int, default=6, help="ours/reference alternations")
    p.add_argument("--eval-samples", type=int, default=2000, help="per round and side")
    p.add_argument("--out", default="bench_results/bench.csv")
    p.add_argument("--quick", action="store_true", help=f"cases {','.join(QUICK)}, fewer batches")
    p.add_argument("--no-memory", action="store_true", help="skip the T=100 memory check")
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
    try:
        data = load_splits(compose_cfg(CASES["rate25"], args.data_root).data)
    except InputError as e:  # a wrong --data-root: one line, no traceback
        sys.exit(f"error: --data-root {args.data_root}: {e}")
    print(f"{machine()}\nbatch {BATCH}; throughput in samples/s, ratio = ours / reference",
          flush=True)
    rows = []
    for name in names:
        rows.append(bench_case(CASES[name], args.data_root, data, batches, rounds,
                               args.eval_samples))
        print(f"  {name}: train x{rows[-1]['train_ratio']}, eval x{rows[-1]['eval_ratio']}",
              flush=True)
    print()
    print_table(rows)
    extra = []
    if not args.no_memory:
        extra.append(memory_case(MEMORY_CASE.steps, args.data_root, 2 if args.quick else 3))
    if args.accuracy:
        extra.append(accuracy(args.data_root))
    for row in extra:
        print()
        print_table([row])
    verdicts = []
    for case, col, minimum in TARGETS + [(r["case"], "eval_ratio", EVAL_TARGET) for r in rows]:
        hit = [r for r in rows if r["case"] == case]
        if hit:
            ok = hit[0][col] >= minimum
            verdicts.append(f"target {case} {col} >= {minimum}: {hit[0][col]} "
                            f"{'met' if ok else 'MISSED'}")
    for row in extra:
        if "peak_rss_mib_ours" in row:
            ok = row["peak_rss_mib_ours"] <= 2048
            verdicts.append(f"target T={MEMORY_CASE.steps} training peak RSS <= 2048 MiB: "
                            f"{row['peak_rss_mib_ours']} {'met' if ok else 'MISSED'}")
    print("\n" + "\n".join(verdicts))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    write_csv(args.out, rows)
    for row in extra:
        write_csv(os.path.splitext(args.out)[0] + f"_{row['case'].split('_')[0]}.csv", [row])
    md = os.path.splitext(args.out)[0] + ".md"
    with open(md, "w") as f:
        command = " ".join(["python -m snn_sweep.bench", *(argv if argv is not None
                                                           else sys.argv[1:])])
        f.write(f"Machine: {machine()}  \nCommand: `{command}`  \n"
                "Throughput in samples/s; ratio = ours / reference, measured in the same "
                f"process, alternating in {rounds} rounds.\n\n")
        f.write(markdown(rows))
        for row in extra:
            f.write("\n" + markdown([row]))
        f.write("\nTargets of the speed issue on this machine:\n\n"
                + "".join(f"- {v}\n" for v in verdicts))
    print(f"\nwrote {args.out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
