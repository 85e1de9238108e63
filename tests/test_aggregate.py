"""The aggregator on hand-made run dirs: statuses, corrupt files, grouping and bad input; pruned
jobs, jobs with repeats, and Optuna studies with one and two objectives; the run record
(result.json) read without .hydra/, and .hydra/ read by OmegaConf for runs made before it; its
grouped metrics.csv reading against one read_csv per file, on a real sweep and odd files;
matplotlib's backend left as it was."""
import hashlib
import math
import json
import os
import shutil
import statistics
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd
import pytest
import yaml
from conftest import small_overrides
from omegaconf import OmegaConf

import snn_sweep.aggregate as agg
from snn_sweep.aggregate import ANN_LINE, main

ROOT = Path(__file__).resolve().parents[1]
NESTED = ("config", "identity", "choices", "overrides", "swept", "context")


def record(cfg: Dict, choices: Dict, overrides: List[str], seed: int) -> Dict:
    """The run record's fields (notes/record_spec.md) of a job Hydra ran with cfg, choices and
    overrides: what the trainer writes besides today's flat fields."""
    swept = {}
    for override in overrides:
        key = override.split("=", 1)[0]
        if key not in choices:
            value = OmegaConf.select(OmegaConf.create(cfg), key)
            swept[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    identity = {k: v for k, v in cfg.items() if k != "data"}
    return {"identity_version": 2, "identity": identity,
            "config_sha": hashlib.sha256(json.dumps(identity, sort_keys=True).encode()
                                         ).hexdigest()[:16],
            "context": {"data_root": cfg["data"]["root"], "download": False, "device": "cpu",
                        "threads": 2, "host": "node7", "python": "3.11.9", "torch": "2.5.1",
                        "snntorch": "0.9.1",
                        "started": f"2024-01-01T12:00:0{seed % 10}", "ended": None},
            "choices": {k: v for k, v in choices.items() if "/" not in k},
            "overrides": overrides, "swept": swept, "config": cfg}


def write_job(job: Path, timesteps: Optional[int], seed: int, result, metrics: List[Dict],
              encoder: str = "rate", model: str = "snn", repeats: int = 1, old: bool = False,
              groups: Optional[Dict[str, str]] = None) -> Path:
    """A job dir as `python -m snn_sweep -m ...` leaves it; result: dict, None or raw text. A
    dict becomes a run record, or, old=True, a result.json made before it (no
    identity_version); groups: group choices besides model, encoder and experiment."""
    hydra = job / ".hydra"
    hydra.mkdir(parents=True)
    cfg = {"model": {"name": model, "hidden": [64]}, "encoder": {"name": encoder},
           "timesteps": timesteps or 25, "seed": seed, "neuron": {"beta": 0.95},
           "repeats": repeats, "data": {"root": "/data", "train_subset": 100}}
    if isinstance(result, dict) and "dropout" in result:
        cfg["model"]["dropout"] = result["dropout"]
    if isinstance(result, dict) and "beta" in result:
        cfg["neuron"]["beta"] = result["beta"]
    choices = {"model": model, "encoder": encoder, "experiment": None, **(groups or {}),
               "hydra/launcher": "basic", "schema/model@model": "model"}
    cfg.update({g: {"name": option} for g, option in (groups or {}).items()})
    overrides = [f"timesteps={timesteps}", f"seed={seed}", "data.train_subset=100",
                 "model.hidden=[64]"]
    OmegaConf.save(OmegaConf.create(cfg), hydra / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": choices}}}),
                   hydra / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(overrides), hydra / "overrides.yaml")
    if isinstance(result, dict):
        (job / "result.json").write_text(json.dumps(
            {"model": model, "encoder": encoder, "timesteps": timesteps, "seed": seed,
             "beta": 0.95, "traceback": "long\ntext",
             **({} if old else record(cfg, choices, overrides, seed)), **result}))
    elif isinstance(result, str):
        (job / "result.json").write_text(result)
    write_metrics(job, metrics)
    return job


def write_metrics(run: Path, metrics: List[Dict]) -> None:
    if metrics:
        pd.DataFrame(metrics).to_csv(run / "metrics.csv", index=False)


def write_seed(job: Path, seed: int, result: Optional[Dict], metrics: List[Dict]) -> Path:
    """job/seed_<seed>/ of a job with repeats: result.json (None: none), metrics.csv, no .hydra;
    a run record (its own seed, config_sha and start) when the job's result.json is one."""
    run = job / f"seed_{seed}"
    run.mkdir()
    if result is not None:
        path = job / "result.json"
        parent = json.loads(path.read_text()) if path.is_file() else {}
        own = {k: parent[k] for k in ("identity_version",) + NESTED if k in parent}
        if own:
            own["identity"] = {**own["identity"], "seed": seed}
            own["config_sha"] = hashlib.sha256(json.dumps(
                own["identity"], sort_keys=True).encode()).hexdigest()[:16]
            own["context"] = {**own["context"], "started": f"seed {seed}"}
        (run / "result.json").write_text(json.dumps(
            {"model": "snn", "encoder": "rate", "seed": seed, **own, **result}))
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


def test_reused_runs_count_as_completed_and_are_listed(tmp_path, capsys):
    """A run trainer.reuse copied (result.json's reused_from) is a completed run of its sweep,
    summarised with the others and listed with where it came from."""
    sweep = tmp_path / "comparison"
    write_job(sweep / "0", 5, 0, {**done(0.80, 0.81), "reused_from": "stage/3"}, curve(2, 0.8))
    write_job(sweep / "1", 5, 1, done(0.90, 0.91), curve(2, 0.9))
    main([str(sweep), "--out", str(tmp_path / "agg")])
    printed = capsys.readouterr().out
    res = pd.read_csv(tmp_path / "agg" / "results.csv")
    assert list(res["status"]) == ["completed", "completed"]
    assert list(res.columns[:3]) == ["job_dir", "status", "reused_from"]
    assert "reused (trainer.reuse" in printed and f"{sweep / '0'}  = stage/3" in printed
    summary = pd.read_csv(tmp_path / "agg" / "summary.csv")
    assert summary["val_acc_count"].tolist() == [2]


def test_energy_of_two_metric_definitions_is_flagged(tmp_path, capsys):
    """Runs recorded before NeuroBench's definitions (no metrics_version) beside runs after:
    their energy columns are not comparable, and the aggregator says so; one version alone,
    nothing."""
    sweep = tmp_path / "mixed"
    write_job(sweep / "0", 5, 0, {**done(0.80, 0.81), "energy_pj_per_sample": 1e6}, curve(1, 0.8))
    write_job(sweep / "1", 5, 1, {**done(0.90, 0.91), "energy_pj_per_sample": 2e6,
                                  "metrics_version": 2}, curve(1, 0.9))
    main([str(sweep), "--out", str(tmp_path / "agg")])
    assert "two definitions (result.json's metrics_version" in capsys.readouterr().out
    main([str(sweep / "1"), "--out", str(tmp_path / "one")])
    assert "two definitions" not in capsys.readouterr().out


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


def test_run_record_read_without_hydra_files(tree, tmp_path, monkeypatch, capsys):
    """New runs are read from result.json and metrics.csv alone: with .hydra/ deleted (and with
    it broken) every file written is the same; the record's choices and swept values are the
    columns (lists as JSON text), its context's fields plain columns, its nested fields none."""
    for job in ("0", "1", "2", "3", "5"):  # the jobs with a run record
        assert "identity_version" in json.loads((tree / job / "result.json").read_text())
    for job in ("4", "10"):  # killed before its first write, or cut off: not run records
        shutil.rmtree(tree / job)
    write_job(tree / "6", 5, 2, done(0.82, 0.83), curve(2, 0.8), encoder="direct",
              groups={"augment": "affine_mild"})
    bare = without_hydra(tree, tmp_path / "bare")
    for hydra in tree.rglob(".hydra"):  # what a record's reading must not open
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            (hydra / name).write_text("model: [unclosed\n")
    with monkeypatch.context() as m:
        m.setattr(OmegaConf, "load", no_omegaconf_load)
        main([str(bare), "--out", str(tmp_path / "a")])
        printed = capsys.readouterr().out
        main([str(tree), "--out", str(tmp_path / "a_tree")])
        assert capsys.readouterr().out.replace(str(tmp_path / "a_tree"), str(tmp_path / "a")
                                               ).replace(str(tree), str(bare)) == printed
    same_files(tmp_path / "a_tree", tmp_path / "a", str(tree), str(bare))
    assert "unreadable" not in printed and "skipped" not in printed

    res = pd.read_csv(tmp_path / "a" / "results.csv")
    res.index = res["job_dir"].map(lambda p: Path(p).name)
    assert list(res.index) == ["0", "1", "2", "3", "5", "6"]
    assert list(res["model"]) == ["snn"] * 4 + ["ann", "snn"]
    assert list(res["encoder"]) == ["rate"] * 5 + ["direct"]
    assert list(res["augment"].fillna("-")) == ["-"] * 5 + ["affine_mild"]
    assert list(res["data.train_subset"]) == [100] * 6
    assert list(res["model.hidden"]) == ["[64]"] * 6
    assert res.loc["5", "timesteps"] != res.loc["5", "timesteps"]  # result.json's None wins
    assert (res.loc["0", "seed"], res.loc["6", "seed"]) == (0, 2)
    for col, value in (("data_root", "/data"), ("threads", 2), ("device", "cpu"),
                       ("host", "node7"), ("snntorch", "0.9.1"), ("download", False)):
        assert list(res[col]) == [value] * 6, col
    assert list(res["started"]) == [f"2024-01-01T12:00:0{s}" for s in (0, 1, 0, 1, 0, 2)]
    assert not set(NESTED) & set(res.columns) and "identity_version" in res
    assert "experiment" not in res and "hydra/launcher" not in res and "traceback" not in res
    assert "grouped by model, encoder, timesteps" in printed


def test_running_job_with_repeats_known_from_its_record(tmp_path, capsys):
    """A job with repeats still running (or killed) has its seeds in its record from the start:
    one row per seed, .hydra/ or not; each seed's own record gives its context."""
    sweep = tmp_path / "sweep"
    job = write_job(sweep / "0", 5, 0, {
        "status": "running", "repeats": 3, "seeds": [0, 1, 2],
        "seed_dirs": ["seed_0", "seed_1", "seed_2"]}, [], repeats=3)
    write_seed(job, 0, done(0.8, 0.8), curve(2, 0.8))
    write_seed(job, 1, {"status": "running"}, curve(1, 0.6))  # seed_2/ not made yet
    shutil.rmtree(job / ".hydra")
    main([str(sweep)])
    printed = capsys.readouterr().out
    assert printed.startswith("3 runs of 1 jobs")
    res = pd.read_csv(sweep / "results.csv").set_index("job_dir")
    assert list(res.index) == [str(job / f"seed_{s}") for s in range(3)]
    assert list(res["status"]) == ["completed", "running", "unfinished"]
    assert list(res["seed"]) == [0, 1, 2] and set(res["repeat_of"]) == {str(job)}
    assert list(res["model.hidden"]) == ["[64]"] * 3 and list(res["encoder"]) == ["rate"] * 3
    assert list(res["started"].fillna("-")) == ["seed 0", "seed 1", "-"]
    assert f"  {job / 'seed_2'}  unfinished: no result.json" in printed


def test_runs_before_the_record_aggregate_with_new_ones(tmp_path):
    """A sweep continued after the change: jobs without identity_version (.hydra/ read) and run
    records side by side, the same columns from both; a record whose choices, swept values
    or context are not JSON objects is reported as corrupt and skipped."""
    sweep = tmp_path / "sweep"
    write_job(sweep / "0", 5, 0, done(0.8, 0.8), curve(1, 0.8), old=True)
    write_job(sweep / "1", 10, 0, done(0.9, 0.9), curve(1, 0.9), old=True, encoder="direct")
    write_job(sweep / "2", 5, 1, done(0.7, 0.7), curve(1, 0.7))
    write_job(sweep / "3", 10, 1, done(0.6, 0.6), curve(1, 0.6), encoder="direct")
    for i, field in ((4, "choices"), (5, "swept"), (6, "context")):
        write_job(sweep / str(i), 5, 2, {**done(0.5, 0.5), field: ["x"]}, [])
    runs = agg.load([sweep])
    res = runs.results
    assert [Path(p).name for p in res["job_dir"]] == ["0", "1", "2", "3"]
    assert list(res["encoder"]) == ["rate", "direct", "rate", "direct"]
    assert list(res["model"]) == ["snn"] * 4
    assert list(res["model.hidden"]) == ["[64]"] * 4 and list(res["data.train_subset"]) == [100] * 4
    assert list(res["identity_version"].isna()) == [True, True, False, False]
    assert res["host"].isna().tolist() == [True, True, False, False]
    assert runs.keys == ["encoder", "timesteps"]
    assert runs.problems == [f"skipped {sweep / str(i) / 'result.json'}: corrupt ({field}: not "
                             f"a JSON object)" for i, field in ((4, "choices"), (5, "swept"),
                                                                (6, "context"))]


def test_importing_the_aggregator_keeps_the_matplotlib_backend(tree, tmp_path):
    """A notebook's backend stays: importing snn_sweep.aggregate and writing every plot (Optuna's
    history included) neither switches it nor leaves a pyplot figure open."""
    url = make_study(tmp_path, ["maximize"], [{"job": tree / "0", "timesteps": 5,
                                               "values": [0.8]}])
    code = f"""
import matplotlib
import snn_sweep.aggregate
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert matplotlib.rcParams["backend"] == "svg"
import sys
assert "matplotlib.pyplot" not in sys.modules
snn_sweep.aggregate.main([{str(tree)!r}, "--out", {str(tmp_path / "out")!r}, "--study",
                          {url!r}, "--study-name", "s"])
import matplotlib.pyplot as plt
assert matplotlib.get_backend() == "svg" and plt.get_fignums() == []
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "MPLBACKEND": "svg"}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for png in ("accuracy_vs_timesteps.png", "learning_curves.png", "optuna_history.png"):
        assert (tmp_path / "out" / png).read_bytes()[:4] == b"\x89PNG", png


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


def test_best_parameters_on_a_bound_are_named():
    """Ints at an end of their range, floats within 5% of it (of the log range when log):
    what a study's best trial says about its search space; categorical choices have none."""
    import optuna

    from snn_sweep.aggregate.study import on_bounds
    D = optuna.distributions
    dists = {"lr": D.FloatDistribution(1e-4, 3e-2, log=True), "T": D.IntDistribution(8, 25),
             "p": D.FloatDistribution(0.0, 1.0), "aug": D.CategoricalDistribution(["a", "b"])}

    def trial(**params):
        return optuna.trial.create_trial(params=params, distributions=dists, value=0.9)

    assert on_bounds(trial(lr=2.5e-2, T=25, p=0.5, aug="b")) == "lr=0.025 (high); T=25 (high)"
    assert on_bounds(trial(lr=1e-3, T=8, p=0.04, aug="a")) == "T=8 (low); p=0.04 (low)"
    # 2.2e-2 is 5.4% of the log range below 3e-2: inside; so are T=24 and p=0.94
    assert on_bounds(trial(lr=2.2e-2, T=24, p=0.94, aug="a")) == "-"


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
    assert table.loc["unpruned", "best_on_bound"] == "timesteps=5 (low)"
    for name in ("pruned", "unpruned"):
        assert (tmp_path / "out" / name / "trials.md").is_file()
    res = pd.read_csv(tmp_path / "out" / "results.csv")
    assert res["trial_state"].notna().all()  # both studies' jobs mapped to their trials
    assert "pruned/trials.csv" in printed and "studies.md" in printed


# The grouped reading (metrics.csv files that share a header by one read_csv call, line labels
# once per line) against the reading it replaces, run in the same test: read_csv and melt per
# file, a label per curve row.

def exact_reading(monkeypatch) -> None:
    monkeypatch.setattr(agg.runs, "read_curves", agg.curves.read_curves_each)
    monkeypatch.setattr(agg.plots, "line_labels", lambda curves, keys: curves.apply(
        lambda r: agg.plots._label(r, keys), axis=1))


def aggregate_both_ways(dirs: List[Path], out: Path, monkeypatch, capsys) -> Dict[str, str]:
    """Aggregate dirs into out/fast and, with the exact reading, into out/exact; assert that
    every file written, the printed text and load's tables are the same; return the printed
    text."""
    printed, loaded = {}, {}
    for way in ("fast", "exact"):
        with monkeypatch.context() as m:
            if way == "exact":
                exact_reading(m)
            main([*map(str, dirs), "--out", str(out / way)])
            printed[way] = capsys.readouterr().out.replace(str(out / way), "OUT")
            loaded[way] = agg.load(dirs)
    assert printed["fast"] == printed["exact"]
    same_files(out / "fast", out / "exact")
    fast, exact = loaded["fast"], loaded["exact"]
    pd.testing.assert_frame_equal(fast.results, exact.results)
    pd.testing.assert_frame_equal(fast.curves, exact.curves)
    assert (fast.keys, fast.settings, fast.problems) == (exact.keys, exact.settings,
                                                         exact.problems)
    return printed["fast"]


def same_files(a: Path, b: Path, old: str = "", new: str = "") -> None:
    """Both folders hold the same files, byte for byte once old is replaced by new in a's."""
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    for name in files:
        assert (a / name).read_bytes().replace(old.encode(), new.encode()) == \
            (b / name).read_bytes(), name


def without_hydra(sweep: Path, dest: Path) -> Path:
    """A copy of the sweep with every .hydra/ dir left out."""
    shutil.copytree(sweep, dest, ignore=shutil.ignore_patterns(".hydra"))
    assert not list(dest.rglob(".hydra"))
    return dest


def no_omegaconf_load(*args, **kwargs):
    raise AssertionError("OmegaConf.load called")


@pytest.fixture(scope="module")
def real_sweep(data_root, tmp_path_factory) -> Path:
    """ANN and SNN, rate and direct coding, repeats 1 and 2 (seed_<s>/ dirs); the ANN jobs that
    differ only in the encoder find their twin's result (status duplicate, no metrics.csv)."""
    sweep = tmp_path_factory.mktemp("real") / "sweep"
    out = subprocess.run(
        [sys.executable, "-m", "snn_sweep", "-m", "model=ann,snn", "encoder=rate,direct",
         "repeats=1,2", *small_overrides(data_root), "data.train_subset=200",
         "trainer.epochs=2", f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True,
        text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return sweep


@pytest.mark.slow
def test_real_sweep_reads_the_run_record_only(real_sweep, tmp_path, monkeypatch, capsys):
    """A real sweep's jobs are read from their run records: no config loaded by OmegaConf, and
    every file written (the plots included) byte for byte the same with .hydra/ deleted; the
    grouped metrics.csv reading gives what a read_csv per file gives."""
    with monkeypatch.context() as m:
        m.setattr(OmegaConf, "load", no_omegaconf_load)
        runs = agg.load([real_sweep])
    assert len(runs.results) == 12 and (runs.results["status"] == "duplicate").sum() == 3
    assert runs.curves["job_dir"].nunique() == 11  # the ANN that found its twin trained none
    assert {"model", "encoder", "repeats", "data.train_subset", "model.hidden", "threads",
            "device", "data_root"} <= set(runs.results)
    assert not set(NESTED) & set(runs.results)
    printed = aggregate_both_ways([real_sweep], tmp_path, monkeypatch, capsys)
    assert printed.startswith("12 runs of 8 jobs")
    for name in ("results.csv", "summary.csv", "curves.csv", "versus_ann.csv",
                 "learning_curves.png"):
        assert (tmp_path / "fast" / name).is_file()
    bare = without_hydra(real_sweep, tmp_path / "bare")
    main([str(bare), "--out", str(tmp_path / "out_bare")])
    assert capsys.readouterr().out.replace(str(tmp_path / "out_bare"), "OUT").replace(
        str(bare), str(real_sweep)) == printed
    same_files(tmp_path / "out_bare", tmp_path / "fast", str(bare), str(real_sweep))


def test_crafted_tree_same_outputs_and_problems_in_job_order(tree, tmp_path, monkeypatch,
                                                             capsys):
    """Statuses, repeats, a corrupt result.json (job 10) and an unreadable metrics.csv (job 2):
    the same as the exact reading, problems in job order."""
    (tree / "2" / "metrics.csv").write_text("")
    write_job(tree / "6", 5, 4, {"status": "completed", "repeats": 2, "seeds": [4, 5],
                                 "seed_dirs": ["seed_4", "seed_5"]}, [], repeats=2)
    write_seed(tree / "6", 4, done(0.8, 0.8), curve(2, 0.8))
    write_seed(tree / "6", 5, done(0.9, 0.9), [{"epoch": 1, "train_loss": 1, "note": "x"}])
    write_job(tree / "7", 5, 6, None, [], repeats=2)  # killed: seeds from config.yaml
    write_seed(tree / "7", 6, done(0.7, 0.7), [{"epoch": 1, "val_acc": 0.7}])
    printed = aggregate_both_ways([tree], tmp_path, monkeypatch, capsys)
    first, second = (f"no curves from {tree / '2' / 'metrics.csv'}: unreadable",
                     f"skipped {tree / '10' / 'result.json'}: corrupt")
    assert first in printed and second in printed
    assert printed.index(first) < printed.index(second)
    res = pd.read_csv(tmp_path / "fast" / "results.csv").set_index("job_dir")
    assert res.loc[str(tree / "7" / "seed_7"), "status"] == "unfinished"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def test_interpolated_swept_values_are_resolved(tmp_path):
    """A run made before the run record, with a swept key whose config.yaml value is an
    interpolation (`model.in_shape=${data.shape}` on the command line: Hydra keeps
    ${data.shape} in config.yaml and writes the override as $\\{data.shape\\}), gets the
    resolved value, as OmegaConf.select gives it."""
    sweep = tmp_path / "sweep"
    for i in range(2):
        job = write_job(sweep / str(i), 5, i, done(0.8, 0.8), curve(1, 0.8), old=True)
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        cfg.data = {"shape": [1, 28, 28], "train_subset": 100}
        cfg.model.in_shape = "${data.shape}"
        cfg.model.neuron = "${neuron}"
        OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
        overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
        overrides += ["model.in_shape=$\\{data.shape\\}", "model.neuron=$\\{neuron\\}"]
        OmegaConf.save(overrides, job / ".hydra" / "overrides.yaml")
    assert "in_shape: ${data.shape}" in (sweep / "0" / ".hydra" / "config.yaml").read_text()
    runs = agg.load([sweep])
    assert list(runs.results["model.in_shape"]) == ["[1, 28, 28]"] * 2
    assert list(runs.results["model.neuron"]) == ['{"beta": 0.95}'] * 2
    assert runs.problems == []


HYDRA_CHANGES = ["flow style", "comments", "no overrides", "duplicate key", "no choices"]


def change_hydra(hydra: Path, change: str) -> None:
    """.hydra files not in OmegaConf.save's block style, or broken."""
    if change == "flow style":
        cfg = OmegaConf.to_container(OmegaConf.load(hydra / "config.yaml"))
        (hydra / "config.yaml").write_text(yaml.safe_dump(cfg, default_flow_style=True))
    elif change == "comments":
        edit(hydra / "config.yaml", "  hidden:\n", "  hidden:\n# the widths\n")
        edit(hydra / "config.yaml", "seed: 1\n", "# seed\nseed: 1  # one\n")
    elif change == "no overrides":
        (hydra / "overrides.yaml").write_text("[]\n")
    elif change == "duplicate key":
        edit(hydra / "config.yaml", "seed: 1\n", "seed: 1\nseed: 2\n")
    elif change == "no choices":
        edit(hydra / "hydra.yaml", "choices:", "options:")


@pytest.mark.parametrize("change", HYDRA_CHANGES)
def test_hydra_files_of_runs_before_the_record_read_by_omegaconf(tmp_path, change):
    """Runs made before the run record (no identity_version): their group choices and swept
    values come from .hydra/ as OmegaConf reads it, whatever the YAML style; a broken file is
    reported by path and its job skipped."""
    sweep = tmp_path / "sweep"
    for i in range(3):
        write_job(sweep / str(i), 5 * (i + 1), i, done(0.8, 0.8), curve(2, 0.8), old=True,
                  encoder="direct" if i == 1 else "rate")
    hydra = sweep / "1" / ".hydra"
    change_hydra(hydra, change)
    runs = agg.load([sweep])
    res = runs.results.set_index(runs.results["job_dir"].map(lambda p: Path(p).name))
    if change in ("duplicate key", "no choices"):
        name = "config.yaml" if change == "duplicate key" else "hydra.yaml"
        assert len(runs.problems) == 1
        assert runs.problems[0].startswith(f"skipped {hydra / name}: unreadable (")
        assert list(res.index) == ["0", "2"]
        return
    assert runs.problems == [] and list(res.index) == ["0", "1", "2"]
    assert list(res["encoder"]) == ["rate", "direct", "rate"]  # hydra.yaml's choices
    assert "experiment" not in res and "hydra/launcher" not in res
    if change == "no overrides":
        assert res.loc["1", ["data.train_subset", "model.hidden"]].isna().all()
        assert res.loc["0", "model.hidden"] == "[64]"
    else:
        assert list(res["data.train_subset"]) == [100] * 3
        assert list(res["model.hidden"]) == ["[64]"] * 3
    assert "timesteps" in runs.keys and "encoder" in runs.keys


@pytest.mark.parametrize("change", ["crlf metrics", "quoted metrics"])
def test_metrics_files_of_other_dialects_read_as_pandas_reads_them(tmp_path, monkeypatch,
                                                                   capsys, change):
    """metrics.csv files in other dialects: the same tables and messages as a read_csv per
    file."""
    sweep = tmp_path / "sweep"
    for i in range(3):
        write_job(sweep / str(i), 5 * (i + 1), i, done(0.8, 0.8), curve(2, 0.8 + i / 100))
    if change == "crlf metrics":
        pd.DataFrame(curve(2, 0.5)).to_csv(sweep / "1" / "metrics.csv", index=False,
                                           lineterminator="\r\n")
    else:
        (sweep / "1" / "metrics.csv").write_text('epoch,"val_acc"\n1,"0.5"\n2,0.25\n')
    printed = aggregate_both_ways([sweep], tmp_path / "out", monkeypatch, capsys)
    assert "unreadable" not in printed


def test_curves_files_with_other_columns_keep_their_types(tmp_path, monkeypatch, capsys):
    """metrics.csv files with one header: an all-integer one among float ones, one with an
    empty cell, one with a text column (the whole value column becomes text: each file's own
    types then show, 2 not 2.0)."""
    sweep = tmp_path / "sweep"
    rows = {"0": [{"epoch": 1, "val_loss": 0.5, "n": 3}, {"epoch": 2, "val_loss": 0.4, "n": 4}],
            "1": [{"epoch": 1, "val_loss": 1, "n": 2}],
            "2": [{"epoch": 1, "val_loss": None, "n": 2}, {"epoch": 2, "val_loss": 0.3, "n": 5}]}
    for i, metrics in rows.items():
        write_job(sweep / i, 5, int(i), done(0.8, 0.8), [{**m, "train_acc": 1} for m in metrics])
    aggregate_both_ways([sweep], tmp_path / "out", monkeypatch, capsys)
    write_job(sweep / "3", 5, 3, done(0.8, 0.8), [{"epoch": 1, "val_loss": 0.5, "n": "a"}])
    aggregate_both_ways([sweep], tmp_path / "out2", monkeypatch, capsys)
    curves = pd.read_csv(tmp_path / "out2" / "fast" / "curves.csv", dtype=str)
    assert sorted(curves.loc[curves["job_dir"] == str(sweep / "1"), "value"]) == ["1", "1", "2"]


def test_study_wall_time_leaves_out_pauses_and_counts_overlaps_once():
    """wall_time_min: the time with a trial running; a study continued an hour later does not
    count the hour, and two workers' overlapping trials count once."""
    import datetime as dt
    from types import SimpleNamespace

    from snn_sweep.aggregate.study import busy_seconds
    t0 = dt.datetime(2026, 1, 1, 12)

    def trial(start_s, end_s):
        return SimpleNamespace(datetime_start=t0 + dt.timedelta(seconds=start_s),
                               datetime_complete=None if end_s is None
                               else t0 + dt.timedelta(seconds=end_s))
    # two workers: [0, 60] and [30, 100] overlap; [100, 160] follows; the study is continued
    # an hour later with [3760, 3820]; a trial still running (no end) does not count
    trials = [trial(30, 100), trial(0, 60), trial(100, 160), trial(3760, 3820),
              trial(3800, None), trial(40, 50)]
    assert busy_seconds(trials) == 160 + 60
    assert math.isnan(busy_seconds([trial(0, None)]))


def test_lines_choose_what_splits_the_learning_curves(tmp_path, capsys):
    """By default a line per combination of the settings that vary (model and augment here);
    --lines model picks what splits them, the others averaged; a key that is no setting of the
    runs is refused in one line."""
    from snn_sweep.aggregate.plots import curve_lines
    sweep = tmp_path / "sweep"
    for i, aug in enumerate(("none", "affine_mild", "none", "affine_mild")):
        write_job(sweep / str(i), 5, 0, {**done(0.8, 0.8), "augment": aug}, curve(2, 0.8),
                  model="ann" if i < 2 else "snn", groups={"augment": aug})
    main([str(sweep), "--out", str(tmp_path / "a"), "--lines", "model,augment"])
    curves = pd.read_csv(tmp_path / "a" / "curves.csv")
    assert sorted(set(curve_lines(curves, ["model"]))) == ["model=ann", "model=snn"]
    assert sorted(set(curve_lines(curves))) == [
        "model=ann, augment=affine_mild", "model=ann, augment=none",
        "model=snn, augment=affine_mild", "model=snn, augment=none"]
    assert (tmp_path / "a" / "learning_curves.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match=r"^error: --lines augmnt: not a setting of these "
                                         r"runs; their settings: .*augment"):
        main([str(sweep), "--out", str(tmp_path / "b"), "--lines", "model,augmnt"])


def test_plots_split_lines_by_every_swept_setting(tmp_path):
    """Accuracy against timesteps, the learning curves and accuracy against energy draw a line
    (point) per combination of the swept settings, seeds pooled, labelled key=value: beta 0.5
    and 0.9 are not averaged into one line per encoder."""
    from snn_sweep.aggregate.plots import curves_figure, energy_figure, timesteps_figure
    sweep, i, acc = tmp_path / "sweep", 0, {}
    for encoder in ("rate", "direct"):
        for beta in (0.5, 0.9):
            for t in (5, 10):
                for seed in (0, 1):
                    a = acc[encoder, beta, t, seed] = 0.5 + beta / 4 + t / 100 + seed / 1000
                    write_job(sweep / str(i), t, seed,
                              {**done(a, a), "beta": beta, "energy_pj_per_sample": 10.0 * t},
                              curve(2, a), encoder=encoder)
                    i += 1
    runs = agg.load([sweep])
    assert set(runs.keys) == {"encoder", "timesteps", "beta"}
    ax = timesteps_figure(runs.results, "test_acc", runs.keys).axes[0]
    lines = {c.get_label(): list(c.lines[0].get_ydata()) for c in ax.containers}
    assert lines == {
        f"encoder={e}, beta={b}": [pytest.approx((acc[e, b, t, 0] + acc[e, b, t, 1]) / 2)
                                   for t in (5, 10)]
        for e in ("direct", "rate") for b in (0.5, 0.9)}
    curves = curves_figure(runs.curves).axes[1].get_legend_handles_labels()[1]
    assert sorted(curves) == sorted(f"encoder={e}, timesteps={t}, beta={b} {split}"
                                    for e in ("rate", "direct") for t in (5, 10)
                                    for b in (0.5, 0.9) for split in ("train", "val"))
    summary = agg.summarize(runs.results, runs.keys, ["test_acc", "energy_pj_per_sample"])
    points = energy_figure(summary, runs.keys, "test_acc").axes[0].get_legend_handles_labels()[1]
    assert len(points) == 8 and "encoder=rate, timesteps=5, beta=0.9" in points


def test_legend_names_shorten_keys_unless_two_share_a_name():
    from snn_sweep.aggregate.plots import legend_names
    assert legend_names(["model.num_hidden", "encoder", "data.train_subset"]) == {
        "model.num_hidden": "num_hidden", "encoder": "encoder",
        "data.train_subset": "train_subset"}
    assert legend_names(["model.beta", "neuron.beta", "timesteps"]) == {
        "model.beta": "model.beta", "neuron.beta": "neuron.beta", "timesteps": "timesteps"}
