"""The runs' metrics.csv files as one long table (run, epoch, metric, value)."""
import io
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from .errors import Unusual, _one_line

CURVE_COLUMNS = ["job_dir", "epoch", "metric", "value"]
BIG_INT = re.compile(rb"(?m)(?:^|,)[-+]?\d{19}")  # past int64, or nearly: pandas may not say int


def read_curves(runs: List[Path]) -> Tuple[pd.DataFrame, List[Tuple[int, str]]]:
    """The runs' metrics.csv files in long form, in order (the read_curve of each, concatenated),
    and (run index, message) of each unreadable one. The files with one header line are parsed
    as one text, by one read_csv call (its overhead is most of a small file's cost) and melted
    at once; a group that is not numbers in plain lines, and the whole when a column's type could
    come out otherwise, are read file by file."""
    groups: Dict[bytes, List[Tuple[int, bytes]]] = {}
    singles: List[int] = []
    for i, run in enumerate(runs):
        try:
            data = (run / "metrics.csv").read_bytes()
        except FileNotFoundError:
            continue
        except OSError:
            singles.append(i)
            continue
        header, _, body = data.partition(b"\n")
        if (body.endswith(b"\n") and b'"' not in data and b"\n\n" not in data
                and b"\n\r\n" not in data and data.count(b"\r") == data.count(b"\r\n")
                and not BIG_INT.search(body)):  # no quoting, blank line or huge integer
            groups.setdefault(header + b"\n", []).append((i, body))
        else:
            singles.append(i)
    parts: List[Tuple[np.ndarray, pd.DataFrame]] = []  # (run index of each row, long rows)
    for header, files in groups.items():
        rows = [body.count(b"\n") for _, body in files]
        try:
            wide = pd.read_csv(io.BytesIO(header + b"".join(body for _, body in files)))
            metrics = [c for c in wide.columns if c != "epoch"]
            types = {str(t) for t in wide.dtypes}
            # Numbers only, one float column at least: file by file the same values and types
            if not ("epoch" in wide and metrics and types <= {"int64", "float64"}
                    and (wide[metrics].dtypes == "float64").any() and len(wide) == sum(rows)
                    and isinstance(wide.index, pd.RangeIndex)):
                raise Unusual(header)
            long = wide.melt(id_vars="epoch", var_name="metric", value_name="value")
        except Exception:
            singles += [i for i, _ in files]
            continue
        owner = np.repeat([i for i, _ in files], rows)
        parts.append((np.tile(owner, len(metrics)), long))
    problems: List[Tuple[int, str]] = []
    for i in singles:
        mine: List[str] = []
        long = read_curve(runs[i], mine)
        problems += [(i, message) for message in mine]
        if long is not None:
            parts.append((np.full(len(long), i), long.drop(columns="job_dir")))
    if not parts:
        return pd.DataFrame(columns=CURVE_COLUMNS), sorted(problems)
    owner = np.concatenate([o for o, _ in parts])
    order = np.argsort(owner, kind="stable")  # by run; each run's rows as melt gives them
    long = pd.concat([p for _, p in parts], ignore_index=True).iloc[order]
    if long["value"].dtype != "float64" or str(long["epoch"].dtype) not in ("int64", "float64"):
        return read_curves_each(runs)
    long.insert(0, "job_dir", pd.Series([str(r) for r in runs]).iloc[owner[order]].to_numpy())
    return long.reset_index(drop=True), sorted(problems)


def read_curves_each(runs: List[Path]) -> Tuple[pd.DataFrame, List[Tuple[int, str]]]:
    """read_curves a file at a time: the reading the grouped one must match."""
    parts, problems = [], []
    for i, run in enumerate(runs):
        mine: List[str] = []
        part = read_curve(run, mine)
        problems += [(i, message) for message in mine]
        if part is not None:
            parts.append(part)
    curves = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=CURVE_COLUMNS)
    return curves, problems


def read_curve(job: Path, problems: List[str]) -> Optional[pd.DataFrame]:
    path = job / "metrics.csv"
    if not path.is_file():
        return None
    try:
        curves = pd.read_csv(path)
        if "epoch" not in curves:
            raise ValueError("no epoch column")
    except Exception as e:
        problems.append(f"no curves from {path}: unreadable ({_one_line(e)})")
        return None
    long = curves.melt(id_vars="epoch", var_name="metric", value_name="value")
    long.insert(0, "job_dir", str(job))
    return long
