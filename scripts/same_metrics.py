"""A refactor's proof that it changed nothing: 12 short runs, then their metrics compared.

    python scripts/same_metrics.py run OUT [--data-root ../shared/data]   # the 12 runs into OUT/<name>
    python scripts/same_metrics.py compare BEFORE AFTER                   # every metric, to the bit

Each run: seed 0, trainer.threads=1, 2 000 training images, 2 epochs, one config per row of
RUNS (every built-in model, encoder and neuron, dropout, augmentation, a schedule, BatchNorm,
learnable decay). `compare` exits 1 and names each difference in result.json's metrics or in
metrics.csv (timing and bookkeeping fields aside); 0 when every run matches."""
import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

RUNS = {
    "ann": ["model=ann"],
    "snn_rate": ["model=snn", "encoder=rate"],
    "snn_direct": ["model=snn", "encoder=direct"],
    "snn_latency": ["model=snn", "encoder=latency"],
    "snn_delta": ["model=snn", "encoder=delta", "timesteps=10"],
    "snn_single_step": ["model=snn_single_step", "encoder=direct"],
    "snn_synaptic": ["model=snn", "neuron=synaptic", "neuron.reset_mechanism=zero"],
    "snn_alpha_rate_ce": ["model=snn", "neuron=alpha", "model.readout=rate_ce"],
    "cnn_affine": ["model=cnn", "augment=affine_mild"],
    "csnn": ["model=csnn", "encoder=direct", "timesteps=4"],
    "csnn_bn_recipe": ["recipe=csnn_bn", "timesteps=4"],
    "snn_dropout_cosine": ["recipe=snn_rate", "timesteps=10", "model.dropout=0.2"],
}
COMMON = ["seed=0", "trainer.threads=1", "data.train_subset=2000", "trainer.epochs=2",
          "trainer.progress=false", "data.download=false"]
# Wall-clock fields (they differ run to run however exact the arithmetic) and the record's
# bookkeeping: not metrics.
NOT_METRICS = ("time", "samples_per_s", "snn_sweep_version", "threads", "identity_version",
               "metrics_version")


def run(out: Path, data_root: str) -> None:
    for name, overrides in RUNS.items():
        cmd = [sys.executable, "-m", "snn_sweep", *COMMON, f"data.root={data_root}",
               *overrides, f"hydra.run.dir={out / name}"]
        print(" ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def numbers(record: dict) -> dict:
    """The numeric fields of a result.json or metrics.csv row but the timing ones."""
    out = {}
    for key, value in record.items():
        if any(t in key for t in NOT_METRICS):
            continue
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def differences(before: Path, after: Path) -> list:
    diffs = []
    for name in RUNS:
        a, b = before / name, after / name
        ra = numbers(json.loads((a / "result.json").read_text()))
        rb = numbers(json.loads((b / "result.json").read_text()))
        for key in sorted(set(ra) | set(rb)):
            va, vb = ra.get(key), rb.get(key)
            if va is None or vb is None or not (va == vb or (math.isnan(va) and math.isnan(vb))):
                diffs.append(f"{name}: result.json {key}: {va} vs {vb}")
        rows_a = list(csv.DictReader(open(a / "metrics.csv")))
        rows_b = list(csv.DictReader(open(b / "metrics.csv")))
        if len(rows_a) != len(rows_b):
            diffs.append(f"{name}: metrics.csv has {len(rows_a)} vs {len(rows_b)} rows")
        for i, (x, y) in enumerate(zip(rows_a, rows_b)):
            if numbers(x) != numbers(y):
                diffs.append(f"{name}: metrics.csv row {i + 1}: {numbers(x)} vs {numbers(y)}")
    return diffs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--data-root", default="../shared/data")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = p.parse_args()
    if args.cmd == "run":
        run(args.out, args.data_root)
        return
    diffs = differences(args.before, args.after)
    print("\n".join(diffs) if diffs else f"same metrics: {len(RUNS)} runs, every metric equal")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
