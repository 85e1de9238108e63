"""The aggregator on thousands of job dirs, against a plain read of their files.

    .venv/bin/python scripts/bench_aggregate.py [--source SWEEP] [--n 3000 10000]
        [--repeat 3] [--write docs/bench/aggregate.md]

Runs a small real sweep (16 jobs of 2 epochs on synthetic digits, about 20 s) unless --source
names one, copies its job dirs into a temporary folder until there are N of them, each copy with
its own seed and config_sha (result.json and metrics.csv, and .hydra/ for a job made before the
run record; not the checkpoint, nor the seed_<s>/ dirs of a job with repeats), and times in
this one process, in turns, best of --repeat: the plain read (json.load of every result.json,
pandas.read_csv of every metrics.csv) and snn_sweep.aggregate's aggregate (every table and
plot written). Prints a Markdown table, also written to --write.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from snn_sweep.aggregate import aggregate, find_jobs

ROOT = Path(__file__).resolve().parents[1]


def synthetic_mnist(root: Path) -> None:
    """Tiny MNIST-shaped IDX files: class k lights rows 2k+2 and 2k+3."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 400), ("t10k", 100)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.random((n, 28, 28)) < 0.05).astype(np.uint8) * 255
        for i, k in enumerate(y):
            x[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 255
        for kind, a in (("images-idx3", x), ("labels-idx1", y)):
            head = struct.pack(">BBBB", 0, 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(head + a.tobytes())


def source_sweep(tmp: Path) -> Path:
    """ANN and SNN, rate and direct coding, 2 seeds, 2 timesteps: 16 real job dirs."""
    synthetic_mnist(tmp / "data")
    sweep = tmp / "source"
    subprocess.run([sys.executable, "-m", "snn_sweep", "-m", "model=ann,snn",
                    "encoder=rate,direct", "seed=0,1", "timesteps=3,5",
                    f"data.root={tmp / 'data'}", "data.download=false", "data.val_size=100",
                    "model.hidden=[32]",
                    "trainer.epochs=2", "trainer.progress=false", "trainer.threads=1",
                    f"hydra.sweep.dir={sweep}"], cwd=ROOT, check=True, capture_output=True)
    return sweep


def clone(jobs, n: int, dest: Path) -> None:
    """n job dirs, copy k of the sources shifting their seeds by k * (highest seed + 1): in the
    run record (seed, config_sha, and the seed in its identity, swept values, overrides and
    config), or, for a source made before it, in result.json and .hydra/."""
    results = [json.loads((job / "result.json").read_text()) for job in jobs]
    step = max(r.get("seed", 0) for r in results) + 1
    for j in range(n):
        job, result, k = jobs[j % len(jobs)], results[j % len(jobs)], j // len(jobs)
        seed = result.get("seed", 0) + k * step
        out = dest / str(j)
        out.mkdir(parents=True)
        sha = hashlib.sha256(f"{result.get('config_sha')}/{k}".encode()).hexdigest()[:16]
        copy = {**result, "seed": seed, "config_sha": sha}
        if "identity_version" in result:
            for field in ("identity", "swept", "config"):
                if "seed" in result.get(field, {}):
                    copy[field] = {**result[field], "seed": seed}
            copy["overrides"] = [re.sub(r"^seed=\d+$", f"seed={seed}", o)
                                 for o in result.get("overrides", [])]
        else:  # the aggregator reads .hydra/ for it
            (out / ".hydra").mkdir()
            for name, pattern, new in (("config.yaml", r"(?m)^seed: \d+$", f"seed: {seed}"),
                                       ("overrides.yaml", r"(?m)^- seed=\d+$", f"- seed={seed}"),
                                       ("hydra.yaml", r"\bseed=\d+", f"seed={seed}")):
                text = (job / ".hydra" / name).read_text()
                (out / ".hydra" / name).write_text(re.sub(pattern, new, text))
        (out / "result.json").write_text(json.dumps(copy, indent=2) + "\n")
        if (job / "metrics.csv").is_file():  # not for a job that found its twin's result
            shutil.copyfile(job / "metrics.csv", out / "metrics.csv")


def plain_read(runs) -> None:
    for run in runs:
        with open(run / "result.json") as f:
            json.load(f)
        if os.path.isfile(run / "metrics.csv"):
            pd.read_csv(run / "metrics.csv")


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=Path, help="a sweep dir to copy (default: run a small one)")
    p.add_argument("--n", type=int, nargs="+", default=[3000, 10000], help="job dirs")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each, best kept")
    p.add_argument("--write", type=Path, help="also write the table there")
    args = p.parse_args()
    # The copies' metrics are alike: scipy's t-test warns of precision loss in versus_ann.
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = args.source or source_sweep(tmp)
        jobs = [job for job in find_jobs(source) if (job / "result.json").is_file()]
        loads = [os.getloadavg()[0]]
        rows = []
        for n in args.n:
            top = tmp / f"sweep_{n}"
            clone(jobs, n, top)
            runs = find_jobs(top)
            plain_read(runs)  # warm: both read from the page cache
            times = [(seconds(lambda: plain_read(runs)), seconds(
                lambda: aggregate([top], tmp / f"out_{n}", "test_acc", [], None)))
                for _ in range(args.repeat)]  # in turns, so both see the same machine
            plain, agg = map(min, zip(*times))
            loads.append(os.getloadavg()[0])
            rows.append({"job dirs": n, "plain read (s)": f"{plain:.2f}",
                         "aggregate (s)": f"{agg:.2f}", "ratio": f"{agg / plain:.2f}"})
            print(rows[-1], flush=True)
            shutil.rmtree(top)
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    text = (f"{table}\n\nCopies of a {len(jobs)}-job sweep's dirs, {os.cpu_count()} cores, "
            f"load average {min(loads):.1f} to {max(loads):.1f}; best of {args.repeat} "
            f"(scripts/bench_aggregate.py).\n")
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
