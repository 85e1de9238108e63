"""Set the comparison's test accuracies beside the published figures they are measured against.

    python scripts/targets.py docs/results/comparison

reads the aggregator's summary.csv in DIR (mean and std over seeds of each recipe's test
accuracy, each run tested once at its best validation epoch) and writes DIR/targets.md: per
recipe, its accuracy, the target it has to reach and whether it does, and the published result
of the same kind of network that the target comes from. The tutorial-sized conv nets (cnn, csnn)
have no target: their literature-grade twins (cnn_bn, csnn_bn) carry it.
"""
import sys
from pathlib import Path

import pandas as pd

# recipe: (target test accuracy, the published anchor)
TARGETS = {
    "ann": (0.985, "784-800-10 MLP: 98.4 without augmentation, 98.9 with affine distortions "
                   "(Simard et al. 2003)"),
    "snn_rate": (0.987, "STBP 784-800-10: 98.89 (Wu et al. 2018); SMDP 784-800-10: 98.5 ± 0.3"),
    "snn_direct": (0.987, "as snn_rate"),
    "snn_single_step": (0.982, "-"),
    "cnn": (None, "tutorial-6 net, a row of its own"),
    "csnn": (None, "tutorial-6 net, a row of its own"),
    "cnn_bn": (0.995, "small CNNs with BN and augmentation: >= 99.5"),
    "csnn_bn": (0.995, "PLIF conv-BN net, T=8, direct: 99.63 val-selected, 99.72 with random "
                       "affine augmentation (Fang et al. 2021)"),
}


def table(summary: pd.DataFrame) -> str:
    rows = []
    for recipe, (target, anchor) in TARGETS.items():
        found = summary[summary["recipe"] == recipe]
        if found.empty:
            continue
        r = found.iloc[0]
        rows.append({"recipe": recipe,
                     "test_acc (mean ± std)": f"{r.test_acc_mean:.4f} ± {r.test_acc_std:.4f}",
                     "seeds": int(r.test_acc_count),
                     "target": "-" if target is None else f"{target:.3f}",
                     "met": "-" if target is None else
                     ("met" if r.test_acc_mean >= target else "MISSED"),
                     "published": anchor})
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def main(argv) -> int:
    if len(argv) != 1:
        sys.exit(__doc__.split("\n\n")[1].strip())
    path = Path(argv[0]) / "summary.csv"
    if not path.is_file():
        sys.exit(f"error: {path}: no such file (run the aggregator on the comparison first)")
    summary = pd.read_csv(path)
    missing = {"recipe", "test_acc_mean", "test_acc_std", "test_acc_count"} - set(summary)
    if missing:
        sys.exit(f"error: {path}: no column {', '.join(sorted(missing))} (not a comparison's "
                 f"summary: its runs need recipe= and a test accuracy)")
    (path.parent / "targets.md").write_text(table(summary))
    print(f"{path.parent / 'targets.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
