"""Statistics over seeds: the summary per group of settings and each SNN against its ANN."""
import math
from typing import Any, List

import pandas as pd
from scipy import stats

# NeuroBench's figures that matter for SNN against ANN beside accuracy (energy.py): effective
# accumulates and multiply-accumulates per sample, activation sparsity, footprint.
SUMMARY_METRICS = ("val_acc", "test_acc", "best_epoch", "train_time_s", "spikes_per_sample",
                   "effective_acs_per_sample", "effective_macs_per_sample", "activation_sparsity",
                   "footprint_bytes", "energy_pj_per_sample")
FORMATS = {"val_acc": ".4f", "test_acc": ".4f", "val_loss": ".4f", "test_loss": ".4f",
           "best_epoch": ".1f", "train_time_s": ".1f", "spikes_per_sample": ".0f",
           "effective_acs_per_sample": ".3g", "effective_macs_per_sample": ".3g",
           "activation_sparsity": ".3f", "footprint_bytes": ".3g", "energy_pj_per_sample": ".3g"}
COUNTS = ("runs", "jobs", "completed", "pruned")  # summary columns that are not metrics


def summarize(df: pd.DataFrame, keys: List[str], metrics: List[str]) -> pd.DataFrame:
    """mean, std and count of each metric per group of the varying settings, over completed
    jobs only (a pruned job's metrics are those of an early epoch)."""
    data = df.copy()
    data[metrics] = data[metrics].where(data["status"] == "completed")
    if not keys:  # nothing varies: one group of all jobs
        data["runs"] = "all"
        keys = ["runs"]
    grouped = data.groupby(keys, dropna=False, sort=True)
    summary = grouped[metrics].agg(["mean", "std", "count"]) if metrics else None
    shown = ("completed", "pruned") if (df["status"] == "pruned").any() else ("completed",)
    counts = pd.DataFrame({"jobs": grouped.size(), **{
        status: grouped["status"].apply(lambda s, status=status: int((s == status).sum()))
        for status in shown}})
    if summary is not None:
        summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
        counts = counts.join(summary)
    return counts.reset_index()


def _cell(value: Any) -> str:
    """A setting as text: 25 not 25.0, '-' where it does not apply (an ANN's timesteps)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)


def summary_markdown(summary: pd.DataFrame, keys: List[str], metrics: List[str]) -> str:
    """mean ± std per metric (the mean alone when a group has one run)."""
    table = pd.DataFrame({c: summary[c].map(_cell) for c in summary.columns
                          if c in keys or c in COUNTS})
    for m in metrics:
        fmt = FORMATS.get(m, ".4g")
        table[m] = [
            "" if pd.isna(mean) else
            format(mean, fmt) + ("" if pd.isna(std) else f" ± {format(std, fmt)}")
            for mean, std in zip(summary[f"{m}_mean"], summary[f"{m}_std"])]
    # disable_numparse: tabulate would reformat the numbers given as text
    align = ["left" if c in keys or c == "runs" else "right" for c in table.columns]
    return table.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"


def versus_ann(df: pd.DataFrame, keys: List[str], metric: str = "test_acc") -> pd.DataFrame:
    """For each group of spiking runs (by the varying settings): its mean metric minus that of
    the non-spiking runs of the same architecture (its ANN), with the 95% confidence interval
    of the difference by Welch's t-test over the runs (seeds) of both: a gap whose interval
    excludes 0 exceeds seed noise. Where the ANN runs also vary a setting the group has (an
    augmentation, a number of epochs), only those with the group's value are its ANN."""
    if not all(c in df for c in ("spiking", "arch", metric)):
        return pd.DataFrame()
    done = df[(df["status"] == "completed") & df[metric].notna()]
    spiking = done["spiking"].astype(str) == "True"
    rows = []
    group_keys = [k for k in keys if k in done] or ["arch"]
    for name, g in done[spiking].groupby(group_keys, dropna=False, sort=True):
        names = name if isinstance(name, tuple) else (name,)
        ann = done[~spiking & (done["arch"] == g["arch"].iloc[0])]
        for key, value in zip(group_keys, names):
            same = ann[key].astype(str) == str(value)
            if same.any() and not same.all():
                ann = ann[same]
        if ann.empty:
            continue
        a, b = g[metric].astype(float), ann[metric].astype(float)
        low = high = p = math.nan
        if len(a) > 1 and len(b) > 1 and (a.std() > 0 or b.std() > 0):
            test = stats.ttest_ind(a, b, equal_var=False)
            ci = test.confidence_interval(0.95)
            low, high, p = float(ci.low), float(ci.high), float(test.pvalue)
        rows.append({**dict(zip(group_keys, names)),
                     "versus": ", ".join(sorted(ann["model"].astype(str).unique())),
                     "runs": len(a), "versus_runs": len(b), f"{metric}_mean": a.mean(),
                     f"versus_{metric}_mean": b.mean(), "difference": a.mean() - b.mean(),
                     "ci95_low": low, "ci95_high": high, "welch_p": p,
                     "beyond_seed_noise": bool(low > 0 or high < 0)})
    return pd.DataFrame(rows)


def versus_markdown(table: pd.DataFrame, metric: str) -> str:
    lines = [f"{metric} of each spiking model minus its ANN's (same layers): mean difference "
             "and 95% confidence interval (Welch's t over seeds)", ""]
    shown = table.copy()
    for c in shown.columns[:list(shown.columns).index("versus")]:  # the group's settings
        shown[c] = shown[c].map(_cell)
    for c in (f"{metric}_mean", f"versus_{metric}_mean", "difference", "ci95_low", "ci95_high"):
        shown[c] = shown[c].map(lambda v: "-" if pd.isna(v) else f"{v:+.4f}"
                                if c in ("difference", "ci95_low", "ci95_high") else f"{v:.4f}")
    shown["welch_p"] = shown["welch_p"].map(lambda v: "-" if pd.isna(v) else f"{v:.2g}")
    return "\n".join(lines) + shown.to_markdown(index=False, disable_numparse=True) + "\n"
