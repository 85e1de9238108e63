"""`python -m snn_sweep.aggregate DIR [DIR ...]`: one table comparing every run of sweeps and runs.

Reads only run-dir files (.hydra/{config,hydra,overrides}.yaml, result.json, metrics.csv), never
the trainer, so it works on results copied from another machine or made by an older version.
Writes into OUT (default: the first DIR): results.csv, summary.csv, summary.md, curves.csv,
versus_ann.csv (each spiking model against its ANN, with a confidence interval over seeds),
accuracy_vs_timesteps.png, learning_curves.png, accuracy_vs_energy.png and, with --study,
trials.csv, trials.md and optuna_history.png (one objective) or pareto.csv, pareto.md and
pareto.png (two objectives). Prints the summary table. `load` gives the same tables to Python
(the notebook).

A job trained with repeats=K (K > 1) becomes one row per seed (its seed_<s>/ sub-dirs), with
repeat_of naming the job. Pruned and failed runs are listed but kept out of the summary, and so
is a run of the same settings as an earlier one (status duplicate).

Speed (thousands of job dirs in seconds, README): a job's files are read at about the cost of
reading them. Of .hydra/ only what is used is parsed, by PyYAML with OmegaConf's own rules and
without its node tree: the runtime.choices block of hydra.yaml and the lines of each swept key in
config.yaml, cut out by their indentation in the block style OmegaConf.save writes (parsed once
per distinct text: most are alike across a sweep's jobs). Anything else (an interpolation such
as ${data.shape}, a file of another shape, an error) is read by OmegaConf as before, so values
and messages are the same; a config.yaml is only checked where it is read. The metrics.csv files
that share a header are parsed by one read_csv call, and by one call each where the types of
their columns could come out otherwise.
"""
import argparse
import functools
import io
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from scipy import stats  # noqa: E402

from . import optuna_trial  # noqa: E402
from .optuna_trial import experimental_ok, public_storage  # noqa: E402
from .rundir import SETTINGS, TRIAL_FIELDS  # noqa: E402

try:  # OmegaConf's YAML rules (libyaml's parser, its float and no-timestamp resolvers)
    from omegaconf._yaml import get_yaml_loader  # noqa: E402
except ImportError:  # omegaconf < 2.4
    from omegaconf._utils import get_yaml_loader  # noqa: E402
YAML_LOADER = get_yaml_loader()

# repeats of a setting, and what the model name already says: not settings to group by
NOT_GROUPED = ("seed", "repeats", "arch", "spiking", *TRIAL_FIELDS)
SUMMARY_METRICS = ("val_acc", "test_acc", "best_epoch", "train_time_s", "spikes_per_sample",
                   "energy_pj_per_sample")
FORMATS = {"val_acc": ".4f", "test_acc": ".4f", "val_loss": ".4f", "test_loss": ".4f",
           "best_epoch": ".1f", "train_time_s": ".1f", "spikes_per_sample": ".0f",
           "energy_pj_per_sample": ".3g"}
DROPPED = ("traceback",)  # kept in result.json; too long for a table
COUNTS = ("runs", "jobs", "completed", "pruned")  # summary columns that are not metrics
ANN_LINE = "ANN (same layers, dense MACs)"


class AggregateError(Exception):
    """Bad input: printed as one line, exit status 1."""


def natural_key(path: Path) -> List[Any]:
    """Sort 2 before 10 in job numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_jobs(top: Path) -> List[Path]:
    """Every job dir under top: one with .hydra/config.yaml (a Hydra job) or result.json."""
    if not top.exists():
        raise AggregateError(f"{top}: no such directory")
    if not top.is_dir():
        raise AggregateError(f"{top}: not a directory")
    jobs = []
    for dirpath, dirnames, filenames in os.walk(top):
        if "result.json" in filenames or os.path.isfile(
                os.path.join(dirpath, ".hydra", "config.yaml")):
            jobs.append(Path(dirpath))
            dirnames[:] = []  # a job holds no other jobs
        else:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    if not jobs:
        raise AggregateError(f"{top}: no run directories found (looked for .hydra/config.yaml "
                             f"or result.json below it)")
    return sorted(jobs, key=natural_key)


def _plain(value: Any) -> Any:
    """A cell value: lists and dicts from the config become JSON text."""
    if value is None or isinstance(value, (str, int, float)):  # most: no container to check
        return value
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def _key(override: str) -> str:
    """The config key of an override: `+a.b=1` -> a.b, `model@x=snn` -> model."""
    return str(override).split("=", 1)[0].lstrip("+~").split("@")[0]


Row = Dict[str, Any]
NO_RESULT = {"status": "unfinished", "error": "no result.json"}  # killed, running, or crashed early


def read_hydra(job: Path, problems: List[str]
               ) -> Optional[Tuple[Row, List[str], List[str], Optional["JobConfig"]]]:
    """The job's group choices and swept values, their names and its config (None without
    .hydra/config.yaml); None (reported in problems) when a file is corrupt."""
    try:
        return read_hydra_fast(job)
    except Exception:  # anything unusual, errors included: OmegaConf reads it, as it always did
        return read_hydra_exact(job, problems)


def read_hydra_exact(job: Path, problems: List[str]
                     ) -> Optional[Tuple[Row, List[str], List[str], Optional["JobConfig"]]]:
    """read_hydra through OmegaConf objects: about 25 ms a job."""
    row: Row = {"job_dir": str(job)}
    hydra_dir = job / ".hydra"
    path = hydra_dir / "config.yaml"
    try:
        cfg = OmegaConf.load(path) if path.is_file() else None
        path = hydra_dir / "hydra.yaml"
        choices = OmegaConf.load(path).hydra.runtime.choices if path.is_file() else {}
        path = hydra_dir / "overrides.yaml"
        overrides = list(OmegaConf.load(path)) if path.is_file() else []
    except Exception as e:
        problems.append(f"skipped {path}: unreadable ({type(e).__name__}: {_one_line(e)})")
        return None
    # Group choices (model=snn ...), not Hydra's own groups nor the schema entries.
    groups = [k for k in choices if "/" not in k]
    row.update({k: choices[k] for k in groups})
    # Swept values (any key=value override that is not a group choice), typed from the config.
    swept = [k for k in map(_key, overrides) if k not in choices and cfg is not None]
    row.update({k: _plain(OmegaConf.select(cfg, k, default=None)) for k in swept})
    config = None if cfg is None else JobConfig(hydra_dir / "config.yaml", cfg=cfg)
    return row, groups, swept, config


def read_hydra_fast(job: Path) -> Tuple[Row, List[str], List[str], Optional["JobConfig"]]:
    """read_hydra from the few lines it uses; raises on anything it does not vouch for."""
    row: Row = {"job_dir": str(job)}
    hydra_dir = os.path.join(row["job_dir"], ".hydra")
    text = {name: _text(os.path.join(hydra_dir, name))
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml")}  # None: no such file
    config = None if text["config.yaml"] is None else JobConfig(
        Path(hydra_dir, "config.yaml"), text["config.yaml"])
    choices = {} if text["hydra.yaml"] is None else _value(text["hydra.yaml"],
                                                           "hydra.runtime.choices")
    if not isinstance(choices, dict) or any(isinstance(v, (list, dict))
                                            for v in choices.values()):
        raise Unusual("hydra.runtime.choices")
    overrides = [] if text["overrides.yaml"] is None else _overrides(text["overrides.yaml"])
    groups = [k for k in choices if "/" not in k]
    row.update({k: choices[k] for k in groups})
    swept = [k for k in map(_key, overrides) if k not in choices and config is not None]
    row.update({k: _plain(config.select(k)) for k in swept})
    if config is not None and not os.path.isfile(os.path.join(row["job_dir"], "result.json")):
        config.select("repeats"), config.select("seed")  # seed_runs's: any error raised here
    return row, groups, swept, config


class Unusual(Exception):
    """A .hydra file or value that the fast reading does not vouch for."""


class JobConfig:
    """A job's .hydra/config.yaml, read a key at a time: the key's own lines (_value), or, for a
    value only OmegaConf gives right (an interpolation such as ${data.shape}), the whole file
    loaded by OmegaConf."""

    def __init__(self, path: Path, text: Optional[str] = None, cfg: Any = None):
        self.path, self.text, self.cfg = path, text, cfg
        self.cuts: Dict[str, str] = {}  # a key's lines, for its sub-keys (data.root, data.seed)

    def select(self, key: str, default: Any = None) -> Any:
        if self.cfg is None:
            try:
                return _value(self.text, key, self.cuts)
            except Exception:
                self.cfg = OmegaConf.load(self.path)
        return OmegaConf.select(self.cfg, key, default=default)


def _text(path: str) -> Optional[str]:
    """The file's text as OmegaConf.load reads it, None when there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _lines(text: str, key: str, indent: int) -> str:
    """The lines of `key:` and its value in a mapping whose keys are at `indent` spaces, as
    yaml.dump writes it (block style, 2-space steps, a value's continuation lines deeper): from
    the key's line to the next line at that indent or less that is not one of its list items."""
    text = "\n" + text  # each line after a newline; patterns that start with one scan fast
    key_line, after = _patterns(key, indent)
    found = key_line.search(text)
    if not found or key_line.search(text, found.end()):  # none, or a duplicate key
        raise Unusual(key)
    end = after.search(text, found.start() + 1)
    return text[found.start() + 1:end.start() + 1 if end else len(text)]


@functools.lru_cache(maxsize=1024)
def _patterns(key: str, indent: int) -> Tuple[re.Pattern, re.Pattern]:
    """_lines's: the key's line; the newline after its last line."""
    pad = " " * indent
    return (re.compile(f"\n{pad}{re.escape(key)}:[ \n]"),
            re.compile(f"\n(?!{pad} |{pad}-[ \n]|\n| *#)"))  # a comment line is no end


def _value(text: str, key: str, cuts: Optional[Dict[str, str]] = None) -> Any:
    """The value of a dotted key in the YAML text of a mapping, parsed from its own lines (cuts:
    those found so far, by key); raises Unusual unless it is found that way and is what
    OmegaConf would give as it is."""
    parts = key.split(".")
    cuts = {} if cuts is None else cuts
    for depth, part in enumerate(parts):
        prefix = ".".join(parts[:depth + 1])
        if prefix not in cuts:
            cuts[prefix] = _lines(text, part, 2 * depth)
        text = cuts[prefix]
    return _leaf(text, parts[-1])


@functools.lru_cache(maxsize=16384)
def _leaf(text: str, key: str) -> Any:
    """The value of the lines `key: value`, parsed once per text (most recur across a sweep's
    jobs; the value is shared, not to be changed); raises Unusual unless it is plain."""
    parsed = yaml.load(text, Loader=YAML_LOADER)
    if not (isinstance(parsed, dict) and list(parsed) == [key] and _is_plain(parsed[key])):
        raise Unusual(key)
    return parsed[key]


def _is_plain(value: Any) -> bool:
    """Plain YAML values with no interpolation (${...}) and no missing value (???) in them."""
    if isinstance(value, str):
        return "${" not in value and value != "???"
    if isinstance(value, list):
        return all(map(_is_plain, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float))


def _overrides(text: str) -> List[Any]:
    """overrides.yaml's list, one `- item` line at a time (most lines recur across jobs)."""
    if text.strip() == "[]":
        return []
    return [_item(line) for line in text.splitlines()]


@functools.lru_cache(maxsize=16384)
def _item(line: str) -> Any:
    """The item of a line `- item`, parsed once per text; raises Unusual unless it is plain."""
    parsed = yaml.load(line, Loader=YAML_LOADER) if line.startswith("- ") else None
    if not (isinstance(parsed, list) and len(parsed) == 1 and _is_plain(parsed[0])):
        raise Unusual(line)
    return parsed[0]


def read_result(path: Path, problems: List[str]) -> Optional[Dict[str, Any]]:
    """result.json as written (NO_RESULT when there is none); None (reported) when corrupt."""
    if not path.is_file():
        return dict(NO_RESULT)
    try:
        result = json.loads(path.read_text())
        if not isinstance(result, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as e:
        problems.append(f"skipped {path}: corrupt ({_one_line(e)})")
        return None
    return result


def _cells(result: Dict[str, Any]) -> Row:
    return {k: _plain(v) for k, v in result.items() if k not in DROPPED}


def seed_runs(job: Path, result: Dict[str, Any], cfg: Optional[JobConfig]
              ) -> List[Tuple[Any, str]]:
    """(seed, sub-dir) of each seed a job trained with repeats=K > 1; [] for a plain job. From
    result.json, or from the config when the job was killed before writing one (the trainer
    runs seeds seed, seed+1 ... in seed_<s>/)."""
    if "repeats" in result:
        repeats = result["repeats"]
    elif not (job / "result.json").is_file() and cfg is not None:
        repeats = cfg.select("repeats", default=1)
    else:
        return []
    if not isinstance(repeats, int) or repeats <= 1:
        return []
    first = result.get("seed", cfg.select("seed") if cfg is not None else None)
    seeds = result.get("seeds") or (
        [first + i for i in range(repeats)] if isinstance(first, int) else None)
    dirs = result.get("seed_dirs") or (
        [f"seed_{s}" for s in seeds] if isinstance(seeds, list) else None)
    if not (isinstance(seeds, list) and isinstance(dirs, list) and len(seeds) == len(dirs)
            and all(isinstance(d, str) for d in dirs)):
        raise ValueError(f"repeats={repeats} without matching seeds and seed_dirs lists")
    return list(zip(seeds, dirs))


def read_job(job: Path, problems: List[str]) -> Optional[Tuple[List[Row], List[str], List[str]]]:
    """The job's results rows (one, or one per seed of a job with repeats) with the names of its
    group choices and swept keys, or None (reported in problems) when a file of it is corrupt."""
    read = read_hydra(job, problems)
    result = read_result(job / "result.json", problems) if read else None
    if result is None:
        return None
    base, groups, swept, cfg = read
    try:
        runs = seed_runs(job, result, cfg)
    except ValueError as e:
        problems.append(f"skipped {job / 'result.json'}: corrupt ({_one_line(e)})")
        return None
    if not runs:
        # result.json's settings are the effective ones (an ANN has no encoder), so they win.
        return [{**base, **_cells(result)}], groups, swept
    # Seeds share the job's settings; their metrics are their own (the job's are means).
    shared = _cells({k: v for k, v in result.items() if k in SETTINGS + TRIAL_FIELDS})
    if result["status"] == "pruned":  # the pruner stopped the job before these seeds ran
        missing = {"status": "pruned", "error": "not run: the job was pruned"}
    else:
        missing = {**NO_RESULT, "error": NO_RESULT["error"] + (
            f" (job {result['status']}: {result['error']})"
            if "error" in result and result != NO_RESULT else "")}
    rows = []
    for seed, sub in runs:
        own = read_result(job / sub / "result.json", problems)
        if own is not None:
            rows.append({**base, "job_dir": str(job / sub), "repeat_of": str(job), **shared,
                         "seed": seed, **_cells(missing if own == NO_RESULT else own)})
    return rows, groups, swept


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
    """read_curves a file at a time (about 5 ms a file)."""
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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def setting_columns(df: pd.DataFrame, swept: List[str], choices: List[str]) -> List[str]:
    """Candidate settings: result.json's names first (they are the effective values)."""
    cols = [c for c in SETTINGS if c in df] + choices + swept
    return list(dict.fromkeys(c for c in cols if c in df))


def varying(df: pd.DataFrame, columns: List[str]) -> List[str]:
    """Settings that differ between jobs, seed excluded, and a column dropped when it repeats an
    earlier one row for row (neuron.beta swept on the command line is result.json's beta)."""
    out: List[str] = []
    text = df[columns].astype(str)
    for c in columns:
        if c in NOT_GROUPED or text[c].nunique() < 2:
            continue
        if not any(text[c].equals(text[k]) for k in out):
            out.append(c)
    return out


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


def plot_vs_timesteps(df: pd.DataFrame, metric: str, path: Path) -> Optional[str]:
    """metric against timesteps, one line per encoder (and model, when several are spiking);
    non-spiking models as horizontal lines. Means ± std over every other setting and seed."""
    done = df[(df["status"] == "completed")] if metric in df else df.iloc[0:0]
    done = done[done[metric].notna()]
    if "timesteps" not in done:
        return "no timesteps column"
    spiking = done[done["timesteps"].notna()]
    if spiking.empty:
        return "no completed spiking run"
    fig, ax = plt.subplots(figsize=(6, 4))
    by_model = "model" in spiking and spiking["model"].nunique() > 1
    line_keys = (["model"] if by_model else []) + (["encoder"] if "encoder" in spiking else [])
    for name, g in spiking.groupby(line_keys or (lambda _: "snn"), dropna=False):
        stats = g.groupby("timesteps")[metric].agg(["mean", "std"]).sort_index()
        label = " / ".join(str(n) for n in (name if isinstance(name, tuple) else (name,)))
        ax.errorbar(stats.index.astype(float), stats["mean"], yerr=stats["std"].fillna(0),
                    marker="o", capsize=3, label=label)
    for name, g in done[done["timesteps"].isna()].groupby("model"):
        ax.axhline(g[metric].mean(), linestyle="--", color="gray")
        ax.annotate(f"{name} (no time)", (ax.get_xlim()[0], g[metric].mean()),
                    textcoords="offset points", xytext=(4, 4), color="gray", fontsize=8)
    ax.set_xlabel("timesteps")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against timesteps (mean ± std over jobs)")
    ax.grid(alpha=0.3)
    ax.legend(title=" / ".join(line_keys) or None)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def _label(row: Any, keys: List[str]) -> str:
    return " / ".join(_cell(row[k]) for k in keys if k in row and _cell(row[k]) != "-") or "runs"


def line_labels(data: pd.DataFrame, keys: List[str]) -> pd.Series:
    """_label of each row by keys, worked out once per distinct combination (a sweep's curves
    have thousands of rows per line)."""
    line = data.groupby(keys, dropna=False, sort=False).ngroup()
    first = line.drop_duplicates()  # each line's first row
    labels = data.loc[first.index].apply(lambda r: _label(r, keys), axis=1)
    return line.map(pd.Series(labels.to_numpy(), index=first.to_numpy()))


def plot_learning_curves(curves: pd.DataFrame, path: Path) -> Optional[str]:
    """Loss and accuracy per epoch of the completed jobs, averaged per model and encoder (an
    ANN against rate- and direct-coded SNNs, each its own line)."""
    curves = curves[curves["status"] == "completed"]
    if curves.empty:
        return "no metrics.csv of a completed job"
    keys = [k for k in ("model", "encoder", "timesteps") if k in curves
            and curves[k].astype(str).nunique() > 1] or [k for k in ("model",) if k in curves]
    data = curves.assign(line=line_labels(curves, keys) if keys else "run")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, kind in zip(axes, ("loss", "acc")):
        for i, (name, g) in enumerate(data.groupby("line")):
            for split, style in (("train", "-"), ("val", "--")):
                m = g[g["metric"] == f"{split}_{kind}"].groupby("epoch")["value"].mean()
                if not m.empty:
                    ax.plot(m.index, m.values, style, marker="o", markersize=3,
                            color=f"C{i % 10}", label=f"{name} {split}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("accuracy" if kind == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Learning curves (mean over the completed runs of each line)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def plot_vs_energy(summary: pd.DataFrame, keys: List[str], metric: str,
                   path: Path) -> Optional[str]:
    """metric against energy per sample (log scale), one point per summary group, mean ± std
    over its runs: what a spiking model buys in energy and pays in accuracy."""
    x, y = "energy_pj_per_sample_mean", f"{metric}_mean"
    if x not in summary or y not in summary:
        return f"no {x.replace('_mean', '')} or {metric} column"
    points = summary[summary[x].notna() & summary[y].notna()]
    if points.empty:
        return "no completed run with an energy figure"
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (_, r) in enumerate(points.iterrows()):
        ax.errorbar(r[x], r[y], xerr=_zero(r.get(x.replace("mean", "std"))),
                    yerr=_zero(r.get(f"{metric}_std")), marker="o", capsize=3,
                    color=f"C{i % 10}", label=_label(r, keys))
    ax.set_xscale("log")
    ax.set_xlabel("energy per sample (pJ, 45 nm estimate)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against energy (mean ± std over runs)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def _zero(value: Any) -> float:
    return 0.0 if value is None or pd.isna(value) else float(value)


def load_study(url: str, name: Optional[str], df: pd.DataFrame):
    """The Optuna study, named or the only one the jobs (or the storage) know."""
    known = sorted(df["optuna_study"].dropna().unique()) if "optuna_study" in df else []
    try:
        study = optuna_trial.load_study(url, name, known)
    except ValueError as e:
        raise AggregateError(str(e)) from None
    if not study.trials:
        raise AggregateError(f"--study {public_storage(url)}: study {study.study_name!r} has "
                             "no trials")
    return study


def objective_names(study) -> List[str]:
    """Each objective's name in the tables: `value` for a single one, else the study's metric
    names (values_0, values_1 ... when it has none)."""
    n = len(study.directions)
    if n == 1:
        return ["value"]
    return list(study.metric_names or (f"values_{i}" for i in range(n)))


def trial_table(study, trials: pd.DataFrame) -> pd.DataFrame:
    """Trial number, state, each objective's value, parameters and the job dir it ran in."""
    names = objective_names(study)
    metric_names = study.metric_names
    # trials_dataframe's value columns: value, value_<name>, values_<name> or values_<i>.
    if len(names) == 1:
        values = ["value" if metric_names is None else f"value_{metric_names[0]}"]
    else:
        values = [f"values_{n}" for n in (metric_names or range(len(names)))]
    params = [c for c in trials if c.startswith("params_")]
    table = trials[["number", "state", *values, *params]].copy()
    table.columns = ["number", "state", *names, *(c.removeprefix("params_") for c in params)]
    if "user_attrs_job_dir" in trials:
        table["job_dir"] = trials["user_attrs_job_dir"].map(_relative)
    return table


def _markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".4g") + "\n"


def pareto_table(study, table: pd.DataFrame) -> pd.DataFrame:
    """The completed trials with on_front: whether no other trial dominates it."""
    front = {t.number for t in study.best_trials}
    done = table[table["state"] == "COMPLETE"].drop(columns="state")
    done = done.assign(on_front=done["number"].isin(front))
    last = ["on_front"] + (["job_dir"] if "job_dir" in done else [])
    return done[[c for c in done if c not in last] + last].reset_index(drop=True)


def plot_pareto(study, pareto: pd.DataFrame, ann: List[float], path: Path) -> Optional[str]:
    """First objective against the second: every completed trial grey, the front as a
    staircase, and the dense ANN's energy as a reference when the second one is an energy."""
    import optuna

    names = objective_names(study)
    if len(names) != 2:
        return f"{len(names)} objectives (drawn for two)"
    if pareto.empty:
        return "no completed trial"
    y, x = names
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(pareto[x], pareto[y], color="0.7", s=16, zorder=2,
               label=f"completed trials ({len(pareto)})")
    front = pareto[pareto["on_front"]].sort_values(x)
    # The best first objective reachable within a given second one: flat until the next point.
    lower_x = study.directions[1] == optuna.study.StudyDirection.MINIMIZE
    ax.step(front[x], front[y], where="post" if lower_x else "pre", color="C0", marker="o",
            zorder=3, label=f"Pareto front ({len(front)})")
    for _, r in front.iterrows():
        ax.annotate(str(int(r["number"])), (r[x], r[y]), textcoords="offset points",
                    xytext=(3, 3), fontsize=7, color="C0")
    for i, energy in enumerate(ann):
        ax.axvline(energy, linestyle="--", color="C3", label=None if i else ANN_LINE)
    xs = pd.concat([pareto[x], pd.Series(ann, dtype=float)])
    if (xs > 0).all() and xs.max() > 10 * xs.min():  # energies span decades across timesteps
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"Study {study.study_name}: Pareto front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def ann_energies(df: pd.DataFrame, mine: pd.Series) -> List[float]:
    """The dense-ANN energy per sample of the study's completed jobs (of all, if none is its),
    one value per architecture."""
    done = df[(df["status"] == "completed") & (mine if mine.any() else True)]
    if "ann_energy_pj_per_sample" not in done:
        return []
    return sorted(pd.to_numeric(done["ann_energy_pj_per_sample"], errors="coerce").dropna()
                  .unique().tolist())


def study_outputs(study, df: pd.DataFrame, out: Path, written: List[str], notes: List[str]
                  ) -> pd.DataFrame:
    """trials.csv and .md; Optuna's history plot (one objective) or the Pareto front (two); the
    trial's state and values on each job's row."""
    import optuna

    trials = study.trials_dataframe()
    trials.to_csv(out / "trials.csv", index=False)
    table = trial_table(study, trials)
    (out / "trials.md").write_text(_markdown(table))
    written += ["trials.csv", "trials.md"]
    names = objective_names(study)

    if "optuna_trial" not in df:
        df["optuna_trial"] = pd.NA
        df["optuna_study"] = pd.NA
    mine = df["optuna_study"] == study.study_name
    by_number = table.set_index("number")
    numbers = pd.to_numeric(df["optuna_trial"], errors="coerce")[mine]
    df.loc[mine, "trial_state"] = numbers.map(by_number["state"])  # other studies' rows stay
    for name in names:  # trial_value, or trial_<metric> per objective
        df.loc[mine, f"trial_{name}"] = numbers.map(by_number[name])
    missing = sorted(set(by_number.index) - set(numbers.dropna().astype(int)))
    notes.append(f"study {study.study_name!r}: {len(trials)} trials, {int(mine.sum())} of "
                 f"{len(df)} jobs mapped to one"
                 + (f"; trials with no job dir here: {_ranges(missing)}" if missing else ""))

    if len(names) == 1:
        # rc_context: Optuna switches matplotlib to its own style for good otherwise.
        with experimental_ok(), plt.rc_context():
            ax = optuna.visualization.matplotlib.plot_optimization_history(study)
            ax.figure.set_size_inches(7, 4)
            ax.figure.tight_layout()
            ax.figure.savefig(out / "optuna_history.png", dpi=120)
            plt.close(ax.figure)
        written.append("optuna_history.png")
        return df
    notes.append(f"optuna_history.png not drawn: {len(names)} objectives (pareto.png shows "
                 f"the trade-off)")
    pareto = pareto_table(study, table)
    pareto.to_csv(out / "pareto.csv", index=False)
    best_first = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    front = pareto[pareto["on_front"]].drop(columns="on_front")
    (out / "pareto.md").write_text(_markdown(front.sort_values(names[0], ascending=best_first)))
    written += ["pareto.csv", "pareto.md"]
    ann = ann_energies(df, mine) if "energy" in names[1] else []
    with plt.rc_context():
        drawn("pareto.png", plot_pareto(study, pareto, ann, out / "pareto.png"), written, notes)
    return df


def study_row(study, df: pd.DataFrame) -> Row:
    """One line of studies.csv: trials by state, epochs reported, wall and training time, best
    value (one objective) or size of the Pareto front (two)."""
    trials = study.trials
    states = [t.state.name for t in trials]
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    jobs = df[df["optuna_study"] == study.study_name]
    row: Row = {"study": study.study_name,
                "directions": ",".join(d.name.lower() for d in study.directions),
                "trials": len(trials), **{s.lower(): states.count(s)
                                          for s in ("COMPLETE", "PRUNED", "FAIL")},
                "epochs": sum(len(t.intermediate_values) for t in trials),
                "wall_time_min": (max(ends) - min(starts)).total_seconds() / 60
                if starts and ends else math.nan,
                "train_time_min": pd.to_numeric(jobs.get("train_time_s"), errors="coerce").sum()
                / 60 if "train_time_s" in jobs else math.nan}
    if len(study.directions) == 1 and "COMPLETE" in states:
        row["best_trial"], row["best_value"] = study.best_trial.number, study.best_value
    elif "COMPLETE" in states:
        row["pareto_front"] = len(study.best_trials)
    return row


def drawn(name: str, why_not: Optional[str], written: List[str], notes: List[str]) -> None:
    """Record a plot as written, or why it was not drawn."""
    if why_not:
        notes.append(f"{name} not drawn: {why_not}")
    else:
        written.append(name)


def _relative(path: Any) -> Any:
    """A job dir relative to the working directory when it lies below it."""
    if not isinstance(path, str) or not os.path.isabs(path):
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _ranges(numbers: List[int]) -> str:
    return ", ".join(str(n) for n in numbers[:20]) + (" ..." if len(numbers) > 20 else "")


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
    first = ["job_dir", "status"] + [c for c in ("repeat_of", "duplicate_of") if c in df] \
        + settings
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


def versus_ann(df: pd.DataFrame, keys: List[str], metric: str = "test_acc") -> pd.DataFrame:
    """For each group of spiking runs (by the varying settings): its mean metric minus that of
    the non-spiking runs of the same architecture (its ANN), with the 95% confidence interval
    of the difference by Welch's t-test over the runs (seeds) of both: a gap whose interval
    excludes 0 exceeds seed noise."""
    if not all(c in df for c in ("spiking", "arch", metric)):
        return pd.DataFrame()
    done = df[(df["status"] == "completed") & df[metric].notna()]
    spiking = done["spiking"].astype(str) == "True"
    rows = []
    group_keys = [k for k in keys if k in done] or ["arch"]
    for name, g in done[spiking].groupby(group_keys, dropna=False, sort=True):
        ann = done[~spiking & (done["arch"] == g["arch"].iloc[0])]
        if ann.empty:
            continue
        a, b = g[metric].astype(float), ann[metric].astype(float)
        low = high = p = math.nan
        if len(a) > 1 and len(b) > 1 and (a.std() > 0 or b.std() > 0):
            test = stats.ttest_ind(a, b, equal_var=False)
            ci = test.confidence_interval(0.95)
            low, high, p = float(ci.low), float(ci.high), float(test.pvalue)
        names = name if isinstance(name, tuple) else (name,)
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


def aggregate(dirs: List[Path], out: Optional[Path], metric: str, study_urls: List[str],
              study_name: Optional[str]) -> str:
    """Do the work; return the text to print. Raises AggregateError on bad input."""
    runs = load(dirs)
    df, keys, problems = runs.results, runs.keys, runs.problems
    studies = [load_study(url, study_name, df) for url in study_urls]
    completed = df[df["status"] == "completed"]
    if not completed.empty and metric not in completed:
        numeric = [c for c in completed.columns if pd.api.types.is_numeric_dtype(completed[c])]
        raise AggregateError(f"--metric {metric}: not in result.json; numeric fields: "
                             f"{', '.join(numeric)}")
    notes: List[str] = []
    out = out or dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    study_written: List[str] = []
    for study in studies:  # several: each one's files in a folder of its name
        where = out if len(studies) == 1 else out / study.study_name
        where.mkdir(exist_ok=True)
        mine: List[str] = []
        df = study_outputs(study, df, where, mine, notes)
        study_written += [str(Path(where.relative_to(out), f)) for f in mine]
    if studies:
        table = pd.DataFrame([study_row(study, df) for study in studies])
        table.to_csv(out / "studies.csv", index=False)
        (out / "studies.md").write_text(table.to_markdown(index=False, floatfmt=".4g") + "\n")
        study_written += ["studies.csv", "studies.md"]
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
    drawn("accuracy_vs_timesteps.png",
          plot_vs_timesteps(df, metric, out / "accuracy_vs_timesteps.png"), written, notes)
    drawn("learning_curves.png", plot_learning_curves(runs.curves, out / "learning_curves.png"),
          written, notes)
    drawn("accuracy_vs_energy.png",
          plot_vs_energy(summary, keys, metric, out / "accuracy_vs_energy.png"), written, notes)
    written += study_written

    counts = df["status"].value_counts()
    runs = f"{len(df)} jobs"
    if "repeat_of" in df:
        jobs = df["repeat_of"].fillna(df["job_dir"]).nunique()
        runs = f"{len(df)} runs of {jobs} jobs (one per seed of a job with repeats)"
    lines = [f"{runs} in {', '.join(map(str, dirs))}: "
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
    pruned = df[df["status"] == "pruned"]
    if not pruned.empty:
        lines.append("pruned (kept out of the summary):")
        for job, epoch, error in zip(pruned["job_dir"], _column(pruned, "pruned_epoch"),
                                     _column(pruned, "error")):
            lines.append(f"  {job}  " + (
                f"after epoch {_cell(epoch)}" if not pd.isna(epoch) else
                error if isinstance(error, str) else "pruned"))
    lines += notes + problems
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
    p.add_argument("--metric", default="test_acc",
                   help="result.json metric plotted against timesteps and added to the summary "
                        "(default: test_acc)")
    p.add_argument("--study", metavar="STORAGE_URL", action="append", default=[],
                   help="Optuna storage, e.g. sqlite:///multirun/optuna/studies.db: "
                        "writes studies.csv/md, trials.csv, trials.md and optuna_history.png "
                        "(or, with two objectives, pareto.csv, pareto.md and pareto.png) and "
                        "maps jobs to trials; give it again to compare several studies (each "
                        "one's files then go to OUT/<study name>/)")
    p.add_argument("--study-name", metavar="NAME",
                   help="study in that storage (default: the one the jobs name, or the only one)")
    args = p.parse_args(argv)
    if args.study_name and len(args.study) != 1:
        p.error("--study-name needs exactly one --study STORAGE_URL")
    try:
        print(aggregate(args.dirs, args.out, args.metric, args.study, args.study_name))
    except AggregateError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
