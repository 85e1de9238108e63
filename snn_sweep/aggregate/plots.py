"""The runs' plots: accuracy against timesteps and energy, learning curves (matplotlib).

Drawn on Figure objects, not through pyplot: no backend is chosen or switched (a notebook keeps
its own), no figure is left open, and saving needs no display."""
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..record import SETTINGS
from .runs import varying
from .stats import _cell


def drawn(plots: Dict[str, Optional[str]]) -> Tuple[List[str], List[str]]:
    """The plots written and a note on each one not, from each plot's name and why it was not
    drawn (None: drawn)."""
    return ([name for name, why_not in plots.items() if not why_not],
            [f"{name} not drawn: {why_not}" for name, why_not in plots.items() if why_not])


def legend_names(keys: List[str]) -> Dict[str, str]:
    """Each setting's name in a legend: its last dotted part (model.beta: beta), the whole key
    where two keys share that part (model.beta and neuron.beta)."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


def _varying(data: pd.DataFrame, keys: List[str]) -> List[str]:
    """The keys whose values differ between data's rows (the others split nothing)."""
    return [k for k in keys if k in data and data[k].astype(str).nunique() > 1]


def _saved(fig: Union[Figure, str], path: Path) -> Optional[str]:
    """Write a drawn figure to path; a string is why it was not drawn."""
    if isinstance(fig, str):
        return fig
    fig.savefig(path, dpi=120)
    return None


def timesteps_figure(df: pd.DataFrame, metric: str,
                     keys: Optional[List[str]] = None) -> Union[Figure, str]:
    """metric against timesteps, one line per combination of the settings that vary (KEYS,
    by default those of the run record's settings that vary; timesteps is the x axis), mean ±
    std over seeds; non-spiking models as horizontal lines. A string: why nothing was drawn."""
    done = df[(df["status"] == "completed")] if metric in df else df.iloc[0:0]
    done = done[done[metric].notna()]
    if "timesteps" not in done:
        return "no timesteps column"
    spiking = done[done["timesteps"].notna()]
    if spiking.empty:
        return "no completed spiking run"
    if keys is None:
        keys = varying(done, [c for c in SETTINGS if c in done])
    keys = [k for k in keys if k != "timesteps"]
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    line_keys = _varying(spiking, keys)
    for i, (_, g) in enumerate(_groups(spiking, line_keys)):
        stats = g.groupby("timesteps")[metric].agg(["mean", "std"]).sort_index()
        ax.errorbar(stats.index.astype(float), stats["mean"], yerr=stats["std"].fillna(0),
                    marker="o", capsize=3, color=f"C{i % 10}",
                    label=_label(g.iloc[0], line_keys) if line_keys else "spiking runs")
    still = done[done["timesteps"].isna()]
    ann_keys = list(dict.fromkeys(["model"] * ("model" in still) + _varying(still, keys)))
    for _, g in _groups(still, ann_keys):
        ax.axhline(g[metric].mean(), linestyle="--", color="gray")
        ax.annotate(f"{_label(g.iloc[0], ann_keys)} (no time)",
                    (ax.get_xlim()[0], g[metric].mean()),
                    textcoords="offset points", xytext=(4, 4), color="gray", fontsize=8)
    ax.set_xlabel("timesteps")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against timesteps (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_vs_timesteps(df: pd.DataFrame, metric: str, path: Path,
                      keys: Optional[List[str]] = None) -> Optional[str]:
    """timesteps_figure written to path; why it was not drawn, or None."""
    return _saved(timesteps_figure(df, metric, keys), path)


def _groups(data: pd.DataFrame, keys: List[str]):
    """data's rows by their values of keys (all of them as one group when keys is empty)."""
    return data.groupby(keys, dropna=False, sort=True) if keys else [("", data)] * (not data.empty)


def _label(row: Any, keys: List[str]) -> str:
    names = legend_names(keys)
    return ", ".join(f"{names[k]}={_cell(row[k])}" for k in keys
                     if k in row and _cell(row[k]) != "-") or "runs"


def line_labels(data: pd.DataFrame, keys: List[str]) -> pd.Series:
    """_label of each row by keys, worked out once per distinct combination (a sweep's curves
    have thousands of rows per line)."""
    line = data.groupby(keys, dropna=False, sort=False).ngroup()
    first = line.drop_duplicates()  # each line's first row
    labels = data.loc[first.index].apply(lambda r: _label(r, keys), axis=1)
    return line.map(pd.Series(labels.to_numpy(), index=first.to_numpy()))


def curve_lines(curves: pd.DataFrame, lines: Optional[List[str]] = None) -> pd.Series:
    """Each curve row's line: its values of LINES, by default of every setting that varies
    between the runs (seed pooled): runs.load's curves hold the settings between status and
    epoch."""
    settings = list(curves.columns)
    if "status" in settings and "epoch" in settings:
        settings = settings[settings.index("status") + 1:settings.index("epoch")]
    keys = lines or varying(curves, settings) or [k for k in ("model",) if k in curves]
    return line_labels(curves, keys) if keys else pd.Series("run", index=curves.index)


def curves_figure(curves: pd.DataFrame,
                  lines: Optional[List[str]] = None) -> Union[Figure, str]:
    """Loss and accuracy per epoch of the completed jobs, averaged per line (curve_lines)."""
    curves = curves[curves["status"] == "completed"]
    if curves.empty:
        return "no metrics.csv of a completed job"
    data = curves.assign(line=curve_lines(curves, lines))
    many = data["line"].nunique() > 10  # past matplotlib's 10 default colours: tab20, legend aside
    fig = Figure(figsize=(14 if many else 11, 4.5))
    axes = fig.subplots(1, 2)
    for ax, kind in zip(axes, ("loss", "acc")):
        for i, (name, g) in enumerate(data.groupby("line")):
            for split, style in (("train", "-"), ("val", "--")):
                m = g[g["metric"] == f"{split}_{kind}"].groupby("epoch")["value"].mean()
                if not m.empty:
                    ax.plot(m.index, m.values, style, marker="o", markersize=2 if many else 3,
                            color=matplotlib.colormaps["tab20"](i % 20) if many else f"C{i % 10}",
                            label=f"{name} {split}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("accuracy" if kind == "acc" else "loss")
        ax.grid(alpha=0.3)
        if not many:
            ax.legend(fontsize=7)
    if many:
        axes[1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Learning curves (mean over the completed runs of each line)")
    fig.tight_layout()
    return fig


def plot_learning_curves(curves: pd.DataFrame, path: Path,
                         lines: Optional[List[str]] = None) -> Optional[str]:
    """curves_figure written to path; why it was not drawn, or None."""
    return _saved(curves_figure(curves, lines), path)


def energy_figure(summary: pd.DataFrame, keys: List[str], metric: str) -> Union[Figure, str]:
    """metric against energy per sample (log scale), one point per summary group, mean ± std
    over its runs: what a spiking model buys in energy and pays in accuracy."""
    x, y = "energy_pj_per_sample_mean", f"{metric}_mean"
    if x not in summary or y not in summary:
        return f"no {x.replace('_mean', '')} or {metric} column"
    points = summary[summary[x].notna() & summary[y].notna()]
    if points.empty:
        return "no completed run with an energy figure"
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
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
    return fig


def plot_vs_energy(summary: pd.DataFrame, keys: List[str], metric: str,
                   path: Path) -> Optional[str]:
    """energy_figure written to path; why it was not drawn, or None."""
    return _saved(energy_figure(summary, keys, metric), path)


def _zero(value: Any) -> float:
    return 0.0 if value is None or pd.isna(value) else float(value)
