"""Optuna studies (--study): trial and study tables, the history or Pareto plot, trial columns."""
import math
import os
from pathlib import Path
from typing import Any, List, Optional, Tuple

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from hydra_plugins.snn_sweep_optuna_sweeper.storage import experimental_ok, public_storage

from ..studies import load_study as load_stored_study
from .errors import AggregateError
from .hydra_files import Row
from .plots import drawn

ANN_LINE = "ANN (same layers, dense MACs)"


def load_study(url: str, name: Optional[str], df: pd.DataFrame):
    """The Optuna study, named or the only one the jobs (or the storage) know."""
    known = sorted(df["optuna_study"].dropna().unique()) if "optuna_study" in df else []
    try:
        study = load_stored_study(url, name, known)
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


def _relative(path: Any) -> Any:
    """A job dir relative to the working directory when it lies below it."""
    if not isinstance(path, str) or not os.path.isabs(path):
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".4g") + "\n"


def _ranges(numbers: List[int]) -> str:
    return ", ".join(str(n) for n in numbers[:20]) + (" ..." if len(numbers) > 20 else "")


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
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
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
    return None


def ann_energies(df: pd.DataFrame, mine: pd.Series) -> List[float]:
    """The dense-ANN energy per sample of the study's completed jobs (of all, if none is its),
    one value per architecture."""
    done = df[(df["status"] == "completed") & (mine if mine.any() else True)]
    if "ann_energy_pj_per_sample" not in done:
        return []
    return sorted(pd.to_numeric(done["ann_energy_pj_per_sample"], errors="coerce").dropna()
                  .unique().tolist())


def study_outputs(study, df: pd.DataFrame, out: Path
                  ) -> Tuple[pd.DataFrame, List[str], List[str]]:
    """trials.csv and .md; Optuna's history plot (one objective) or the Pareto front (two); the
    trial's state and values on each job's row. Returns df so marked, the files written into
    out and notes to print."""
    import optuna

    trials = study.trials_dataframe()
    trials.to_csv(out / "trials.csv", index=False)
    table = trial_table(study, trials)
    (out / "trials.md").write_text(_markdown(table))
    written = ["trials.csv", "trials.md"]
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
    notes = [f"study {study.study_name!r}: {len(trials)} trials, {int(mine.sum())} of "
             f"{len(df)} jobs mapped to one"
             + (f"; trials with no job dir here: {_ranges(missing)}" if missing else "")]

    if len(names) == 1:
        import matplotlib.pyplot as plt  # Optuna's plot draws on a pyplot figure: closed here

        # rc_context: Optuna switches matplotlib to its own style for good otherwise.
        with experimental_ok(), matplotlib.rc_context():
            ax = optuna.visualization.matplotlib.plot_optimization_history(study)
            try:
                ax.figure.set_size_inches(7, 4)
                ax.figure.tight_layout()
                ax.figure.savefig(out / "optuna_history.png", dpi=120)
            finally:
                plt.close(ax.figure)
        return df, written + ["optuna_history.png"], notes
    notes.append(f"optuna_history.png not drawn: {len(names)} objectives (pareto.png shows "
                 f"the trade-off)")
    pareto = pareto_table(study, table)
    pareto.to_csv(out / "pareto.csv", index=False)
    best_first = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    front = pareto[pareto["on_front"]].drop(columns="on_front")
    (out / "pareto.md").write_text(_markdown(front.sort_values(names[0], ascending=best_first)))
    written += ["pareto.csv", "pareto.md"]
    ann = ann_energies(df, mine) if "energy" in names[1] else []
    plotted, not_drawn = drawn({"pareto.png": plot_pareto(study, pareto, ann,
                                                          out / "pareto.png")})
    return df, written + plotted, notes + not_drawn


def write_studies(studies: List[Any], df: pd.DataFrame, out: Path
                  ) -> Tuple[pd.DataFrame, List[str], List[str]]:
    """Each study's outputs (in OUT/<study name>/ when there are several) and studies.csv/.md.
    Returns df with the trial columns, the files written (relative to out) and notes to print."""
    written: List[str] = []
    notes: List[str] = []
    for study in studies:
        where = out if len(studies) == 1 else out / study.study_name
        where.mkdir(exist_ok=True)
        df, mine, study_notes = study_outputs(study, df, where)
        written += [str(Path(where.relative_to(out), f)) for f in mine]
        notes += study_notes
    if studies:
        table = pd.DataFrame([study_row(study, df) for study in studies])
        table.to_csv(out / "studies.csv", index=False)
        (out / "studies.md").write_text(table.to_markdown(index=False, floatfmt=".4g") + "\n")
        written += ["studies.csv", "studies.md"]
    return df, written, notes


def busy_seconds(trials) -> float:
    """The time during which at least one of the trials ran: the union of their start-to-end
    intervals, so that a study continued later (a killed sweep resumed, more trials added)
    does not count the pause. NaN when no trial finished."""
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials
                   if t.datetime_start and t.datetime_complete)
    if not spans:
        return math.nan
    total, end = 0.0, spans[0][0]
    for start, stop in spans:  # by start: count only what lies past the union so far
        total += max((stop - max(start, end)).total_seconds(), 0.0)
        end = max(end, stop)
    return total


# A float parameter within this fraction of its range (of its log range for a log one) from an
# end counts as on that bound: a sampler draws no float exactly at a bound.
EDGE = 0.05


def on_bounds(trial) -> str:
    """The trial's numeric parameters at (ints) or near (floats) an end of their search range,
    e.g. `timesteps=25 (high)`: a best value there says the range may cut the optimum off.
    Categorical choices have no order, so no bound; `-` when none is on one."""
    import optuna

    found = []
    for name, dist in trial.distributions.items():
        if not isinstance(dist, (optuna.distributions.IntDistribution,
                                 optuna.distributions.FloatDistribution)) or dist.low == dist.high:
            continue
        value = trial.params[name]
        scale = math.log if dist.log else float
        where = (scale(value) - scale(dist.low)) / (scale(dist.high) - scale(dist.low))
        edge = 0.0 if isinstance(dist, optuna.distributions.IntDistribution) else EDGE
        if where <= edge or where >= 1 - edge:
            found.append(f"{name}={value:.4g} ({'low' if where <= edge else 'high'})")
    return "; ".join(found) or "-"


def study_row(study, df: pd.DataFrame) -> Row:
    """One line of studies.csv: trials by state, epochs reported, wall and training time, best
    value (one objective) and the best trial's parameters on a bound of their range, or size of
    the Pareto front (two)."""
    trials = study.trials
    states = [t.state.name for t in trials]
    jobs = df[df["optuna_study"] == study.study_name]
    row: Row = {"study": study.study_name,
                "directions": ",".join(d.name.lower() for d in study.directions),
                "trials": len(trials), **{s.lower(): states.count(s)
                                          for s in ("COMPLETE", "PRUNED", "FAIL")},
                "epochs": sum(len(t.intermediate_values) for t in trials),
                "wall_time_min": busy_seconds(trials) / 60,
                "train_time_min": pd.to_numeric(jobs.get("train_time_s"), errors="coerce").sum()
                / 60 if "train_time_s" in jobs else math.nan}
    if len(study.directions) == 1 and "COMPLETE" in states:
        row["best_trial"], row["best_value"] = study.best_trial.number, study.best_value
        row["best_on_bound"] = on_bounds(study.best_trial)
    elif "COMPLETE" in states:
        row["pareto_front"] = len(study.best_trials)
    return row
