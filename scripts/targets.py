"""Set the comparison's test accuracies beside the targets and the published figures.

    python scripts/targets.py docs/results/comparison

reads the aggregator's summary.csv in DIR (mean and std over seeds of each recipe's test
accuracy, each run tested once at its best validation epoch) and writes DIR/targets.md: each
kind of network's target (issue 21's: "SNN-MLP >= 98.7%, either encoding" ...), met when one of
its recipes reaches it on average, with the published result it comes from; then each recipe's
accuracy against its kind's target.
"""
import sys
from pathlib import Path

import pandas as pd

# kind: (target test accuracy, its recipes, the published anchor)
TARGETS = {
    "ANN-MLP": (0.985, ("ann",), "784-800-10 MLP: 98.4 without augmentation, 98.9 with affine "
                                 "distortions (Simard et al. 2003)"),
    "SNN-MLP, either encoding": (0.987, ("snn_rate", "snn_direct"),
                                 "STBP 784-800-10: 98.89 (Wu et al. 2018); SMDP 784-800-10: "
                                 "98.5 ± 0.3"),
    "1-step SNN": (0.982, ("snn_single_step",), "-"),
    "CNN": (0.995, ("cnn_bn", "cnn"), "small CNNs with BN and augmentation: >= 99.5"),
    "conv SNN": (0.995, ("csnn_bn", "csnn"), "PLIF conv-BN net, T=8, direct: 99.63 "
                                             "val-selected, 99.72 with random affine "
                                             "augmentation (Fang et al. 2021)"),
}


def table(summary: pd.DataFrame) -> str:
    by_recipe = summary.set_index("recipe")
    kinds, recipes = [], []
    for kind, (target, names, anchor) in TARGETS.items():
        found = [n for n in names if n in by_recipe.index]
        if not found:
            continue
        for n in found:
            r = by_recipe.loc[n]
            recipes.append({"recipe": n, "kind": kind,
                            "test_acc (mean ± std)": f"{r.test_acc_mean:.4f} ± "
                                                     f"{r.test_acc_std:.4f}",
                            "seeds": int(r.test_acc_count), "target": f"{target:.3f}",
                            "reaches it": "yes" if r.test_acc_mean >= target else "no"})
        best = max(found, key=lambda n: by_recipe.loc[n, "test_acc_mean"])
        mean = by_recipe.loc[best, "test_acc_mean"]
        kinds.append({"kind": kind, "target": f"{target:.3f}", "best recipe": best,
                      "test_acc (mean)": f"{mean:.4f}",
                      "met": "met" if mean >= target else "MISSED", "published": anchor})
    return (pd.DataFrame(kinds).to_markdown(index=False, disable_numparse=True) + "\n\n"
            + pd.DataFrame(recipes).to_markdown(index=False, disable_numparse=True) + "\n")


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
