"""The aggregator on hand-made run dirs: statuses, corrupt files, grouping and bad input; pruned
jobs, jobs with repeats, and Optuna studies with one and two objectives."""
import json
import statistics
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd
import pytest
from omegaconf import OmegaConf

from snn_sweep.aggregate import ANN_LINE, main

ROOT = Path(__file__).resolve().parents[1]


def write_job(job: Path, timesteps: Optional[int], seed: int, result, metrics: List[Dict],
              encoder: str = "rate", model: str = "snn", repeats: int = 1) -> Path:
    """A job dir as `python -m snn_sweep -m ...` leaves it; result: dict, None or raw text."""
    hydra = job / ".hydra"
    hydra.mkdir(parents=True)
    cfg = {"model": {"name": model, "hidden": [64]}, "encoder": {"name": encoder},
           "timesteps": timesteps or 25, "seed": seed, "neuron": {"beta": 0.95},
           "repeats": repeats}
    OmegaConf.save(OmegaConf.create(cfg), hydra / "config.yaml")
    choices = {"model": model, "encoder": encoder, "experiment": None, "hydra/launcher": "basic",
               "schema/model@model": "model"}
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": choices}}}),
                   hydra / "hydra.yaml")
    OmegaConf.save(OmegaConf.create([f"timesteps={timesteps}", f"seed={seed}",
                                     "data.train_subset=100", "model.hidden=[64]"]),
                   hydra / "overrides.yaml")
    if isinstance(result, dict):
        (job / "result.json").write_text(json.dumps(
            {"model": model, "encoder": encoder, "timesteps": timesteps, "seed": seed,
             "beta": 0.95, "traceback": "long\ntext", **result}))
    elif isinstance(result, str):
        (job / "result.json").write_text(result)
    write_metrics(job, metrics)
    return job


def write_metrics(run: Path, metrics: List[Dict]) -> None:
    if metrics:
        pd.DataFrame(metrics).to_csv(run / "metrics.csv", index=False)


def write_seed(job: Path, seed: int, result: Optional[Dict], metrics: List[Dict]) -> Path:
    """job/seed_<seed>/ of a job with repeats: result.json (None: none), metrics.csv, no .hydra."""
    run = job / f"seed_{seed}"
    run.mkdir()
    if result is not None:
        (run / "result.json").write_text(json.dumps(
            {"model": "snn", "encoder": "rate", "seed": seed, **result}))
    write_metrics(run, metrics)
    return run


def curve(epochs: int, acc: float) -> List[Dict]:
    return [{"epoch": e, "train_loss": 1.0 / e, "train_acc": acc, "val_loss": 1.1 / e,
             "val_acc": acc} for e in range(1, epochs + 1)]


def done(val: float, test: float) -> Dict:
    return {"status": "completed", "val_acc": val, "test_acc": test, "train_time_s": 2.0,
            "spikes_per_sample": 100.0, "objective": val}


@pytest.fixture
def tree(tmp_path) -> Path:
    sweep = tmp_path / "multirun" / "2024-01-01" / "12-00-00"
    write_job(sweep / "0", 5, 0, done(0.80, 0.81), curve(2, 0.8))
    write_job(sweep / "1", 5, 1, done(0.90, 0.91), curve(2, 0.9))
    write_job(sweep / "2", 10, 0, done(0.85, 0.86), curve(2, 0.85))
    failed = {"status": "failed", "error": "NonFiniteLossError: training loss is nan"}
    write_job(sweep / "3", 10, 1, failed, curve(1, 0.1))
    write_job(sweep / "4", 10, 2, None, curve(1, 0.5))  # killed: no result.json
    write_job(sweep / "10", 10, 3, '{"status": "compl', [])  # cut off mid-write
    write_job(sweep / "5", None, 0, done(0.97, 0.975), curve(2, 0.97), encoder="rate", model="ann")
    return sweep


def test_crafted_tree(tree, tmp_path, capsys):
    out = tmp_path / "agg"
    main([str(tree), "--out", str(out)])
    printed = capsys.readouterr().out
    res = pd.read_csv(out / "results.csv")
    # the corrupt job is reported by path and skipped; the others are listed with their status
    assert f"skipped {tree / '10' / 'result.json'}: corrupt" in printed
    assert sorted(Path(p).name for p in res["job_dir"]) == ["0", "1", "2", "3", "4", "5"]
    status = dict(zip(res["job_dir"].map(lambda p: Path(p).name), res["status"]))
    assert status == {"0": "completed", "1": "completed", "2": "completed", "3": "failed",
                      "4": "unfinished", "5": "completed"}
    assert "not completed:" in printed and "NonFiniteLossError" in printed
    assert "unfinished: no result.json" in printed
    # group choices, swept values (typed from the config), result fields; no traceback column
    for col in ("model", "encoder", "timesteps", "seed", "data.train_subset", "model.hidden",
                "val_acc", "test_acc", "status", "job_dir"):
        assert col in res, col
    assert "traceback" not in res and "experiment" not in res and "hydra/launcher" not in res
    assert res["model.hidden"].iloc[0] == "[64]"

    summary = pd.read_csv(out / "summary.csv")
    # grouped by what varies (model, timesteps), seed pooled; the ANN has no timesteps
    assert "seed" not in summary and {"model", "timesteps"} <= set(summary.columns)
    snn5 = summary[(summary["model"] == "snn") & (summary["timesteps"] == 5)].iloc[0]
    assert snn5["val_acc_count"] == 2 and snn5["val_acc_mean"] == pytest.approx(0.85)
    assert snn5["val_acc_std"] == pytest.approx(0.0707107, rel=1e-4)
    snn10 = summary[(summary["model"] == "snn") & (summary["timesteps"] == 10)].iloc[0]
    assert (snn10["jobs"], snn10["completed"], snn10["test_acc_count"]) == (3, 1, 1)
    md = (out / "summary.md").read_text()
    assert "0.8500 ± 0.0707" in md and md.strip() in printed

    curves = pd.read_csv(out / "curves.csv")
    assert {"job_dir", "status", "timesteps", "epoch", "metric", "value"} <= set(curves.columns)
    # the unfinished job's partial curve is kept; 2 epochs x 4 metrics for job 0
    assert len(curves[curves["job_dir"] == str(tree / "0")]) == 8
    assert "unfinished" in set(curves["status"])
    for png in ("accuracy_vs_timesteps.png", "learning_curves.png"):
        assert (out / png).stat().st_size > 1000


def test_output_defaults_to_first_dir_and_metric_option(tree, capsys):
    main([str(tree), "--metric", "val_acc"])
    assert (tree / "results.csv").is_file() and (tree / "accuracy_vs_timesteps.png").is_file()
    with pytest.raises(SystemExit) as e:
        main([str(tree), "--metric", "val_acc_typo"])
    assert "--metric val_acc_typo" in str(e.value.code) and "test_acc" in str(e.value.code)


def test_dropout_is_a_setting_to_group_by(tmp_path):
    """Jobs that differ only in model.dropout (result.json's dropout) are two rows."""
    sweep = tmp_path / "sweep"
    for i, (p, seed) in enumerate(((0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1))):
        write_job(sweep / str(i), 5, seed, {**done(0.8 + p / 10, 0.8), "dropout": p}, curve(1, 0.8))
    main([str(sweep)])
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["dropout"]) == [0.0, 0.5]
    assert list(summary["val_acc_mean"]) == pytest.approx([0.8, 0.85])


def test_single_run_dir(tmp_path, capsys):
    run = write_job(tmp_path / "outputs" / "run", 5, 0, done(0.8, 0.8), curve(1, 0.8))
    main([str(run)])
    assert "no setting varies" in capsys.readouterr().out
    assert len(pd.read_csv(run / "results.csv")) == 1


@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_bad_dir_is_one_line(tmp_path, kind):
    target = tmp_path / "x"
    if kind == "empty":
        target.mkdir()
    elif kind == "file":
        target.write_text("x")
    r = subprocess.run([sys.executable, "-m", "snn_sweep.aggregate", str(target)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {target}") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_only_corrupt_jobs_is_an_error(tmp_path):
    write_job(tmp_path / "0", 5, 0, "not json", [])
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path)])
    message = str(e.value.code)
    assert message.startswith("error: no readable runs") and "corrupt" in message


def test_missing_study_file_is_an_error_and_not_created(tree, tmp_path):
    db = tmp_path / "nope.db"
    with pytest.raises(SystemExit) as e:
        main([str(tree), "--study", f"sqlite:///{db}"])
    assert "no such sqlite file" in str(e.value.code) and not db.exists()


def header(md: Path) -> List[str]:
    """The column names of a markdown table."""
    return [c.strip() for c in md.read_text().splitlines()[0].strip("|").split("|")]


def test_pruned_job_is_listed_apart_and_kept_out_of_the_summary(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_job(sweep / "0", 5, 0, done(0.80, 0.81), curve(3, 0.8))
    # stopped after epoch 2 with a val_acc far from the completed job's: it would move the mean
    pruned = {"status": "pruned", "pruned_epoch": 2, "epochs": 2, "objective": 0.1,
              "val_acc": 0.1, "val_loss": 2.3}
    write_job(sweep / "1", 5, 1, pruned, curve(2, 0.1))
    write_job(sweep / "2", 5, 2, {"status": "failed", "error": "NonFiniteLossError: nan"}, [])
    main([str(sweep)])
    printed = capsys.readouterr().out
    res = pd.read_csv(sweep / "results.csv")
    assert dict(zip(res["job_dir"].map(lambda p: Path(p).name), res["status"])) == {
        "0": "completed", "1": "pruned", "2": "failed"}
    summary = pd.read_csv(sweep / "summary.csv").iloc[0]
    assert (summary["jobs"], summary["completed"], summary["pruned"]) == (3, 1, 1)
    assert summary["val_acc_count"] == 1 and summary["val_acc_mean"] == pytest.approx(0.80)
    assert "pruned" in header(sweep / "summary.md")
    assert f"pruned (kept out of the summary):\n  {sweep / '1'}  after epoch 2" in printed
    not_completed = printed.split("not completed:")[1].split("pruned (kept")[0]
    assert str(sweep / "2") in not_completed and str(sweep / "1") not in not_completed
    assert "1 pruned" in printed.splitlines()[0]


def test_no_pruned_column_without_pruned_jobs(tree, tmp_path, capsys):
    main([str(tree), "--out", str(tmp_path / "agg")])
    assert "pruned" not in pd.read_csv(tmp_path / "agg" / "summary.csv")
    assert "pruned (kept" not in capsys.readouterr().out


def test_repeats_job_becomes_one_row_per_seed(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    accs = {3: 0.80, 4: 0.84, 5: 0.90}
    mean, std = statistics.mean(accs.values()), statistics.stdev(accs.values())
    job = write_job(sweep / "0", 5, 3, {
        "status": "completed", "repeats": 3, "seeds": [3, 4, 5],
        "seed_dirs": ["seed_3", "seed_4", "seed_5"], "objective": mean, "objective_std": std,
        "objective_per_seed": list(accs.values()), "val_acc": mean, "val_acc_std": std,
        "test_acc": mean, "test_acc_std": std}, [], repeats=3)
    for seed, acc in accs.items():
        write_seed(job, seed, done(acc, acc + 0.01), curve(2, acc))
    # killed during its second seed: no job-level result.json, the seeds come from the config
    killed = write_job(sweep / "1", 10, 0, None, [], repeats=3)
    write_seed(killed, 0, done(0.7, 0.7), curve(2, 0.7))
    write_seed(killed, 1, None, curve(1, 0.6))  # seed_2/ never made
    # pruned during its second seed: the third never ran
    cut = write_job(sweep / "2", 20, 0, {
        "status": "pruned", "repeats": 3, "seeds": [0, 1, 2],
        "seed_dirs": ["seed_0", "seed_1", "seed_2"], "error": "seed 1: RunPruned: pruned"},
        [], repeats=3)
    write_seed(cut, 0, done(0.75, 0.75), curve(2, 0.75))
    write_seed(cut, 1, {"status": "pruned", "pruned_epoch": 1, "val_acc": 0.2}, curve(1, 0.2))
    write_job(sweep / "3", None, 0, done(0.97, 0.97), curve(2, 0.97), model="ann")  # plain
    main([str(sweep)])
    printed = capsys.readouterr().out

    res = pd.read_csv(sweep / "results.csv")
    assert list(res.columns[:3]) == ["job_dir", "status", "repeat_of"]
    rows = res[res["repeat_of"] == str(job)]
    assert sorted(rows["job_dir"]) == [str(job / f"seed_{s}") for s in accs]
    assert sorted(rows["seed"]) == [3, 4, 5] and (rows["timesteps"] == 5).all()
    assert set(rows["model.hidden"]) == {"[64]"} and "objective_std" not in res
    by_dir = res.set_index("job_dir")
    assert by_dir.loc[str(killed / "seed_1"), "status"] == "unfinished"
    assert by_dir.loc[str(killed / "seed_2"), "error"] == "no result.json"
    assert by_dir.loc[str(killed / "seed_2"), "seed"] == 2
    assert by_dir.loc[str(cut / "seed_2"), "status"] == "pruned"
    assert pd.isna(by_dir.loc[str(sweep / "3"), "repeat_of"])

    summary = pd.read_csv(sweep / "summary.csv").set_index("timesteps")
    assert summary.loc[5, "jobs"] == 3 and summary.loc[5, "val_acc_count"] == 3
    assert summary.loc[5, "val_acc_mean"] == pytest.approx(mean)
    assert summary.loc[5, "val_acc_std"] == pytest.approx(std)
    assert (summary.loc[10, "completed"], summary.loc[10, "val_acc_count"]) == (1, 1)
    assert (summary.loc[20, "pruned"], summary.loc[20, "val_acc_mean"]) == (2, 0.75)
    assert printed.startswith("10 runs of 4 jobs")
    assert f"  {cut / 'seed_1'}  after epoch 1" in printed
    assert f"  {cut / 'seed_2'}  not run: the job was pruned" in printed
    assert f"  {killed / 'seed_2'}  unfinished: no result.json" in printed

    curves = pd.read_csv(sweep / "curves.csv")
    assert set(curves["job_dir"]) >= {str(job / f"seed_{s}") for s in accs}
    assert str(job) not in set(curves["job_dir"])


def test_repeats_job_with_a_seed_dir_missing(tmp_path, capsys):
    job = write_job(tmp_path / "0", 5, 0, {
        "status": "failed", "repeats": 2, "seeds": [0, 1], "seed_dirs": ["seed_0", "seed_1"],
        "error": "seed 1: KeyboardInterrupt: "}, [], repeats=2)
    write_seed(job, 0, done(0.8, 0.8), curve(1, 0.8))
    main([str(tmp_path)])
    printed = capsys.readouterr().out
    res = pd.read_csv(tmp_path / "results.csv").set_index("job_dir")
    assert list(res["status"]) == ["completed", "unfinished"]
    assert res.loc[str(job / "seed_1"), "error"] == (
        "no result.json (job failed: seed 1: KeyboardInterrupt: )")
    assert "1 completed, 1 unfinished" in printed


def make_study(tmp_path: Path, directions: List[str], trials: List[Dict]):
    """A sqlite study made directly with Optuna, its trials pointing at job dirs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", directions=directions, storage=url)
    if len(directions) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["val_acc", "val_energy_pj_per_sample"])
    dist = {"timesteps": optuna.distributions.IntDistribution(5, 50)}
    for t in trials:
        study.add_trial(optuna.trial.create_trial(
            params={"timesteps": t["timesteps"]}, distributions=dist, values=t.get("values"),
            state=t.get("state", optuna.trial.TrialState.COMPLETE),
            user_attrs={"job_dir": str(t["job"])}))
    return url


def study_job(sweep: Path, number: int, acc: float, energy: float) -> Dict:
    job = write_job(sweep / str(number), 5 + number, 0, {
        **done(acc, acc), "optuna_study": "s", "optuna_trial": number,
        "val_energy_pj_per_sample": energy, "ann_energy_pj_per_sample": 8000.0},
        curve(1, acc))
    return {"job": job, "timesteps": 5 + number, "values": [acc, energy]}


def test_two_objective_study_pareto_front(tmp_path, capsys, monkeypatch):
    import matplotlib.axes
    import optuna

    sweep = tmp_path / "sweep"
    points = [(0.90, 1000), (0.85, 500), (0.80, 2000), (0.95, 5000), (0.70, 100), (0.84, 600)]
    front = {0, 1, 3, 4}  # 2 is dominated by 0 and 1, 5 by 1
    trials = [study_job(sweep, n, acc, energy) for n, (acc, energy) in enumerate(points)]
    failed = write_job(sweep / "6", 11, 0, {"status": "failed", "error": "x",
                                            "optuna_study": "s", "optuna_trial": 6}, [])
    trials.append({"job": failed, "timesteps": 11, "state": optuna.trial.TrialState.FAIL})
    url = make_study(tmp_path, ["maximize", "minimize"], trials)
    lines = []  # the ANN reference line(s) pareto.png gets
    axvline = matplotlib.axes.Axes.axvline
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline", lambda ax, x=0, *a, **k: (
        lines.append((x, k.get("label"))), axvline(ax, x, *a, **k))[1])
    out = tmp_path / "agg"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning noise
        main([str(sweep), "--out", str(out), "--study", url])
    captured = capsys.readouterr()
    assert captured.err == ""

    pareto = pd.read_csv(out / "pareto.csv")
    assert list(pareto.columns) == ["number", "val_acc", "val_energy_pj_per_sample",
                                    "timesteps", "on_front", "job_dir"]
    assert list(pareto["number"]) == [0, 1, 2, 3, 4, 5]  # complete trials only
    assert set(pareto.loc[pareto["on_front"], "number"]) == front
    md = (out / "pareto.md").read_text().splitlines()
    assert "val_acc" in md[0] and "on_front" not in md[0] and len(md) == 2 + len(front)
    assert [int(line.split("|")[1]) for line in md[2:]] == [3, 0, 1, 4]  # best val_acc first
    assert (out / "pareto.png").stat().st_size > 1000
    assert lines == [(8000.0, ANN_LINE)]
    assert not (out / "optuna_history.png").exists()
    assert "optuna_history.png not drawn: 2 objectives" in captured.out
    assert "pareto.csv, pareto.md, pareto.png" in captured.out.splitlines()[-1]
    assert {"val_acc", "val_energy_pj_per_sample"} <= set(header(out / "trials.md"))
    res = pd.read_csv(out / "results.csv").set_index("optuna_trial")
    assert res.loc[5, "trial_val_energy_pj_per_sample"] == 600
    assert res.loc[3, "trial_val_acc"] == 0.95 and res.loc[6, "trial_state"] == "FAIL"
    assert "trial_value" not in res


def test_one_objective_study_writes_no_pareto_files(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    trials = [study_job(sweep, n, acc, 100.0) for n, acc in enumerate((0.8, 0.9))]
    for t in trials:
        t["values"] = t["values"][:1]
    url = make_study(tmp_path, ["maximize"], trials)
    main([str(sweep), "--study", url])
    printed = capsys.readouterr().out
    assert (sweep / "optuna_history.png").stat().st_size > 1000
    assert not list(sweep.glob("pareto.*")) and "pareto" not in printed
    assert "value" in header(sweep / "trials.md")
    res = pd.read_csv(sweep / "results.csv")
    assert list(res["trial_value"]) == [0.8, 0.9] and set(res["trial_state"]) == {"COMPLETE"}


def test_several_studies_compared_in_studies_md(tmp_path, capsys):
    """Two studies (say with and without a pruner), each in its own storage: one studies.md row
    each, and each study's own files in a folder of its name."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dist = {"timesteps": optuna.distributions.IntDistribution(5, 50)}
    urls = []
    for name, states in (("pruned", ["COMPLETE", "PRUNED", "PRUNED"]),
                         ("unpruned", ["COMPLETE", "COMPLETE", "COMPLETE"])):
        url = f"sqlite:///{tmp_path / name}.db"
        study = optuna.create_study(study_name=name, direction="maximize", storage=url)
        for number, state in enumerate(states):
            epochs = 3 if state == "COMPLETE" else 1
            acc = 0.5 + 0.1 * number
            write_job(tmp_path / "sweeps" / name / str(number), 5, 0, {
                **(done(acc, acc) if state == "COMPLETE" else {"status": "pruned",
                                                               "pruned_epoch": 1}),
                "train_time_s": 60.0 * epochs, "optuna_study": name, "optuna_trial": number},
                curve(epochs, acc))
            study.add_trial(optuna.trial.create_trial(
                params={"timesteps": 5}, distributions=dist, state=getattr(
                    optuna.trial.TrialState, state), value=acc if state == "COMPLETE" else None,
                intermediate_values={e: acc for e in range(1, epochs + 1)}))
        urls += ["--study", url]
    main([str(tmp_path / "sweeps"), "--out", str(tmp_path / "out"), *urls])
    printed = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out" / "studies.csv").set_index("study")
    assert list(table["complete"]) == [1, 3] and list(table["pruned"]) == [2, 0]
    assert list(table["epochs"]) == [3 + 1 + 1, 9]
    assert table.loc["pruned", "train_time_min"] == pytest.approx(5.0)
    assert table.loc["unpruned", "best_value"] == pytest.approx(0.7)
    assert table.loc["unpruned", "best_trial"] == 2
    for name in ("pruned", "unpruned"):
        assert (tmp_path / "out" / name / "trials.md").is_file()
    res = pd.read_csv(tmp_path / "out" / "results.csv")
    assert res["trial_state"].notna().all()  # both studies' jobs mapped to their trials
    assert "pruned/trials.csv" in printed and "studies.md" in printed
