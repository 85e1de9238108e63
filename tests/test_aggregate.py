"""The aggregator on hand-made run dirs: statuses, corrupt files, grouping and bad input."""
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd
import pytest
from omegaconf import OmegaConf

from snn_sweep.aggregate import main

ROOT = Path(__file__).resolve().parents[1]


def write_job(job: Path, timesteps: Optional[int], seed: int, result, metrics: List[Dict],
              encoder: str = "rate", model: str = "snn") -> Path:
    """A job dir as `python -m snn_sweep -m ...` leaves it; result: dict, None or raw text."""
    hydra = job / ".hydra"
    hydra.mkdir(parents=True)
    cfg = {"model": {"name": model, "hidden": [64]}, "encoder": {"name": encoder},
           "timesteps": timesteps or 25, "seed": seed, "neuron": {"beta": 0.95}}
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
    if metrics:
        pd.DataFrame(metrics).to_csv(job / "metrics.csv", index=False)
    return job


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
