"""`load`: every run under some dirs as a results table and a curves table (Runs)."""
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pandas as pd

from ..record import SETTINGS, TRIAL_FIELDS
from .curves import read_curves
from .errors import AggregateError
from .jobs import find_jobs, read_job

# repeats of a setting, and what the model name already says: not settings to group by
NOT_GROUPED = ("seed", "repeats", "arch", "spiking", *TRIAL_FIELDS)


@dataclass
class Runs:
    """Every run found under some directories (what `load` returns, the notebook's input)."""
    results: pd.DataFrame  # one row per run: results.csv
    curves: pd.DataFrame  # one row per run, epoch and metric: curves.csv
    keys: List[str]  # the settings that vary between runs (seed excluded): the summary's groups
    settings: List[str]  # every setting column
    problems: List[str]  # files that could not be read


def load(dirs: List[Path]) -> Runs:
    """Read the run dirs below dirs. Raises AggregateError when there are none."""
    problems: List[str] = []
    jobs = [job for top in dirs for job in find_jobs(Path(top))]
    rows, runs, slots, choices, swept = [], [], [], [], []
    for job in jobs:
        read = read_job(job, problems)
        if read is None:
            continue
        job_rows, groups, keys = read
        rows += job_rows
        choices += groups
        swept += keys
        for row in job_rows:  # a seed's curve lies in its own dir
            runs.append(Path(row["job_dir"]))
            slots.append(len(problems))  # its problem's place: after its job's own
    curves, curve_problems = read_curves(runs)
    for i, message in reversed(curve_problems):  # in run order
        problems.insert(slots[i], message)
    if not rows:
        raise AggregateError("no readable runs in " + ", ".join(map(str, dirs)) + ": "
                             + "; ".join(problems))
    df = mark_duplicates(pd.DataFrame(rows))
    unused = [c for c in dict.fromkeys(choices) if df[c].isna().all()]  # experiment: null ...
    df = df.drop(columns=unused)
    choice_cols = [c for c in dict.fromkeys(choices) if c not in unused]
    swept = [c for c in dict.fromkeys(swept) if c not in choice_cols]
    settings = setting_columns(df, swept, choice_cols)
    keys = varying(df, settings)
    first = ["job_dir", "status"] + \
        [c for c in ("repeat_of", "duplicate_of", "reused_from") if c in df] + settings
    df = df[first + [c for c in df.columns if c not in first]]
    curves = curves.merge(df[["job_dir", "status"] + settings], on="job_dir", how="left")
    curves = curves[["job_dir", "status"] + settings + ["epoch", "metric", "value"]]
    return Runs(df, curves, keys, settings, problems)


def mark_duplicates(df: pd.DataFrame) -> pd.DataFrame:
    """A completed run whose config_sha (its resolved settings, seed included, less what its
    model ignores) equals an earlier completed run's is the same training again: status
    `duplicate`, duplicate_of naming the first, so that it is counted once."""
    if "config_sha" not in df:
        return df
    df = df.copy()
    done = (df["status"] == "completed") & df["config_sha"].notna()
    first = df[done].groupby("config_sha")["job_dir"].transform("first")
    again = first[first != df.loc[first.index, "job_dir"]]
    if not again.empty:
        if "duplicate_of" not in df:
            df["duplicate_of"] = None
        df.loc[again.index, "status"] = "duplicate"
        df.loc[again.index, "duplicate_of"] = again
    return df


def setting_columns(df: pd.DataFrame, swept: List[str], choices: List[str]) -> List[str]:
    """Candidate settings: result.json's names first (they are the effective values)."""
    cols = [c for c in SETTINGS if c in df] + choices + swept
    return list(dict.fromkeys(c for c in cols if c in df))


def varying(df: pd.DataFrame, columns: List[str]) -> List[str]:
    """Settings that differ between jobs, seed excluded, and a column dropped when it repeats an
    earlier one on every row where that one has a value (neuron.beta swept on the command line
    is result.json's beta, which an ANN, whose training ignores it, leaves empty)."""
    out: List[str] = []
    text = df[columns].astype(str)
    for c in columns:
        if c in NOT_GROUPED or text[c].nunique() < 2:
            continue
        if not any(text[c][df[k].notna()].equals(text[k][df[k].notna()])
                   for k in out if df[k].notna().any()):
            out.append(c)
    return out
