"""The command line: aggregate run dirs into OUT's tables and plots and print the summary."""
import argparse
from pathlib import Path
from typing import Any, List, Optional

import pandas as pd

from ..errors import one_line
from .errors import AggregateError
from .plots import drawn, plot_learning_curves, plot_vs_energy, plot_vs_timesteps
from .runs import load
from .stats import (SUMMARY_METRICS, _cell, summarize, summary_markdown, versus_ann,
                    versus_markdown)
from .study import load_study, write_studies


def aggregate(dirs: List[Path], out: Optional[Path], metric: Optional[str], study_urls: List[str],
              study_name: Optional[str], lines: Optional[List[str]] = None) -> str:
    """Do the work; return the text to print. Raises AggregateError on bad input. metric None:
    test_acc, or val_acc where the runs hold no test set's figures (an Optuna study's trials
    skip it)."""
    runs = load(dirs)
    df, keys = runs.results, runs.keys
    unknown = [k for k in lines or [] if k not in runs.settings]
    if unknown:
        raise AggregateError(f"--lines {','.join(unknown)}: not a setting of these runs; "
                             f"their settings: {', '.join(runs.settings)}")
    studies = [load_study(url, study_name, df) for url in study_urls]
    completed = df[df["status"] == "completed"]
    chosen = []
    if metric is None:
        metric = "test_acc" if completed.empty or "test_acc" in completed else "val_acc"
        if metric == "val_acc":
            chosen.append("--metric val_acc: these runs skipped the test set (an Optuna study's "
                          "trials do; trainer.test=true evaluates it)")
    if not completed.empty and metric not in completed:
        numeric = [c for c in completed.columns if pd.api.types.is_numeric_dtype(completed[c])]
        raise AggregateError(f"--metric {metric}: not in result.json; numeric fields: "
                             f"{', '.join(numeric)}")
    out = out or dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    df, study_written, notes = write_studies(studies, df, out)
    notes = chosen + notes
    if "energy_pj_per_sample" in completed and \
            completed.get("metrics_version", pd.Series(dtype=float)).nunique(dropna=False) > 1:
        notes.append("energy and synops: these runs count them by two definitions "
                     "(result.json's metrics_version: 2, NeuroBench's; none, the earlier one); "
                     "compare them within one")
    metrics = [m for m in dict.fromkeys(SUMMARY_METRICS + (metric,)) if m in df]
    summary = summarize(df, keys, metrics)
    df.to_csv(out / "results.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    md = summary_markdown(summary, keys, metrics)
    written = ["results.csv", "summary.csv", "summary.md", "curves.csv"]
    versus = versus_ann(df, keys, metric)
    if not versus.empty:
        versus.to_csv(out / "versus_ann.csv", index=False)
        md += "\n" + versus_markdown(versus, metric)
        written.append("versus_ann.csv")
    (out / "summary.md").write_text(md)
    runs.curves.to_csv(out / "curves.csv", index=False)
    plotted, not_drawn = drawn({
        "accuracy_vs_timesteps.png": plot_vs_timesteps(df, metric,
                                                       out / "accuracy_vs_timesteps.png", keys),
        "learning_curves.png": plot_learning_curves(runs.curves, out / "learning_curves.png",
                                                    lines),
        "accuracy_vs_energy.png": plot_vs_energy(summary, keys, metric,
                                                 out / "accuracy_vs_energy.png")})
    return report(df, dirs, keys, md, notes + not_drawn + runs.problems,
                  written + plotted + study_written, out)


def report(df: pd.DataFrame, dirs: List[Path], keys: List[str], md: str, notes: List[str],
           written: List[str], out: Path) -> str:
    """The printed text: what was found, the summary, the runs that did not count, the notes
    and the files written."""
    counts = df["status"].value_counts()
    found = f"{len(df)} jobs"
    if "repeat_of" in df:
        jobs = df["repeat_of"].fillna(df["job_dir"]).nunique()
        found = f"{len(df)} runs of {jobs} jobs (one per seed of a job with repeats)"
    lines = [f"{found} in {', '.join(map(str, dirs))}: "
             + ", ".join(f"{n} {s}" for s, n in counts.items())
             + (f"; grouped by {', '.join(keys)}" if keys else "; no setting varies")
             + (" (seed pooled)" if "seed" in df and df["seed"].astype(str).nunique() > 1 else ""),
             "", md.rstrip(), ""]
    bad = df[~df["status"].isin(["completed", "pruned", "duplicate"])]
    if not bad.empty:
        lines.append("not completed:")
        for job, status, error in zip(bad["job_dir"], bad["status"], _column(bad, "error")):
            lines.append(f"  {job}  {status}" + (f": {error}" if isinstance(error, str) else ""))
    twins = df[df["status"] == "duplicate"]
    if not twins.empty:
        lines.append("duplicates (the same settings as an earlier job, counted once):")
        lines += [f"  {job}  = {first}" for job, first in zip(twins["job_dir"],
                                                               twins["duplicate_of"])]
    if "reused_from" in df:
        reused = df[df["reused_from"].notna()]
        lines.append("reused (trainer.reuse: a completed run of the same config, copied, not "
                     "trained again):")
        lines += [f"  {job}  = {src}" for job, src in zip(reused["job_dir"],
                                                           reused["reused_from"])]
    pruned = df[df["status"] == "pruned"]
    if not pruned.empty:
        lines.append("pruned (kept out of the summary):")
        for job, epoch, error in zip(pruned["job_dir"], _column(pruned, "pruned_epoch"),
                                     _column(pruned, "error")):
            lines.append(f"  {job}  " + (
                f"after epoch {_cell(epoch)}" if not pd.isna(epoch) else
                error if isinstance(error, str) else "pruned"))
    lines += notes
    lines.append(f"wrote {', '.join(written)} to {out}")
    return "\n".join(lines)


def _column(df: pd.DataFrame, name: str) -> Any:
    """The column's values, None in each row when there is no such column."""
    return df[name] if name in df else [None] * len(df)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m snn_sweep.aggregate",
        description="Collect the run dirs of snn_sweep sweeps and runs into tables and plots.")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="sweep or run directories (searched recursively for job dirs)")
    p.add_argument("--out", type=Path, help="where to write (default: the first DIR)")
    p.add_argument("--metric",
                   help="result.json metric plotted against timesteps and added to the summary "
                        "(default: test_acc; val_acc where the runs skipped the test set)")
    p.add_argument("--study", metavar="STORAGE_URL", action="append", default=[],
                   help="Optuna storage, e.g. sqlite:///multirun/optuna/studies.db: "
                        "writes studies.csv/md, trials.csv, trials.md and optuna_history.png "
                        "(or, with two objectives, pareto.csv, pareto.md and pareto.png) and "
                        "maps jobs to trials; give it again to compare several studies (each "
                        "one's files then go to OUT/<study name>/)")
    p.add_argument("--lines", metavar="KEY[,KEY...]",
                   type=lambda s: [k for k in s.split(",") if k],
                   help="settings whose values make the learning curves' lines, e.g. "
                        "recipe,augment (default: every setting that varies, seed pooled; "
                        "each line is the mean of its runs)")
    p.add_argument("--study-name", metavar="NAME",
                   help="study in that storage (default: the one the jobs name, or the only one)")
    args = p.parse_args(argv)
    if args.study_name and len(args.study) != 1:
        p.error("--study-name needs exactly one --study STORAGE_URL")
    with one_line(AggregateError):
        print(aggregate(args.dirs, args.out, args.metric, args.study, args.study_name,
                        args.lines))
