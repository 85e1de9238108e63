"""The `logger` group: TensorBoard and MLflow runs read back with those libraries' own readers,
for a single run and a sweep, and a failing logger never stops a run."""
import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import run_cli, small_overrides
from snn_sweep import loggers

pytestmark = pytest.mark.slow  # whole runs with loggers: make test runs them, pytest alone does not

ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path, *args):
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def mlflow_args(tmp_path):
    return [f"logger.mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"logger.mlflow.artifact_location={tmp_path / 'mlruns'}"]


def events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_and_mlflow_single_run(data_root, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = tmp_path / "run"
    r = run(tmp_path, *small_overrides(data_root), "trainer.epochs=2",
            "logger=[csv,tensorboard,mlflow]", *mlflow_args(tmp_path), f"hydra.run.dir={out}")
    assert "Warning" not in r.stderr and "WARNING" not in r.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and (out / "metrics.csv").is_file()

    acc = events(out / "tensorboard")
    assert [e.step for e in acc.Scalars("val_acc")] == [1, 2]
    assert acc.Scalars("val_acc")[-1].value == pytest.approx(result["val_acc"])
    assert acc.Scalars("final/test_acc")[0].value == pytest.approx(result["test_acc"])
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.name"].string_value == "snn"
    assert start.hparams["optimizer.lr"].number_value == pytest.approx(result["lr"])
    config = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "timesteps: 4" in config

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["snn_sweep"])
    assert len(runs) == 1 and runs["status"][0] == "FINISHED"
    assert runs["metrics.final_test_acc"][0] == pytest.approx(result["test_acc"])
    assert runs["params.model.name"][0] == "snn" and runs["tags.status"][0] == "completed"
    client = mlflow.MlflowClient()
    history = client.get_metric_history(runs["run_id"][0], "val_acc")
    assert [m.step for m in history] == [1, 2]
    assert {a.path for a in client.list_artifacts(runs["run_id"][0])} == {
        "result.json", "checkpoint.pt"}
    if importlib.util.find_spec("flask"):  # the full mlflow package: the README's `mlflow ui`
        assert ui_lists_runs(tmp_path / "mlflow.db") == [runs["run_id"][0]]


def ui_lists_runs(db: Path) -> list:
    """`mlflow ui --backend-store-uri sqlite:///DB`, started briefly: the ids of the runs its
    REST API lists."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                           f"sqlite:///{db}", "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        for _ in range(240):  # it takes a while to start on a busy machine
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        search = urllib.request.Request(f"{url}/runs/search", method="POST",
                                        data=json.dumps({"experiment_ids": ["1"]}).encode(),
                                        headers={"Content-Type": "application/json"})
        runs = json.load(urllib.request.urlopen(search, timeout=30))["runs"]
        return [r["info"]["run_id"] for r in runs]
    finally:
        ui.terminate()
        ui.wait(timeout=30)


def test_a_sweep_groups_its_jobs(data_root, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    sweep = tmp_path / "sweep"
    run(tmp_path, "-m", "seed=0,1", *small_overrides(data_root), "logger=[tensorboard,mlflow]",
        *mlflow_args(tmp_path), f"hydra.sweep.dir={sweep}")
    for job in ("0", "1"):
        assert [e.step for e in events(sweep / job / "tensorboard").Scalars("val_acc")] == [1]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=[str(sweep)])  # one experiment per sweep dir
    assert sorted(runs["tags.mlflow.runName"]) == ["0", "1"]
    assert sorted(runs["params.seed"]) == ["0", "1"] and set(runs["status"]) == {"FINISHED"}


def test_csv_alone_writes_only_the_run_dir(data_root, tmp_path):
    out = tmp_path / "run"
    run(tmp_path, *small_overrides(data_root), f"hydra.run.dir={out}")
    assert sorted(p.name for p in out.iterdir()) == [
        ".hydra", "checkpoint.pt", "metrics.csv", "result.json", "train.log"]


def test_a_failing_logger_is_one_warning_and_the_run_goes_on(data_root, tmp_path):
    pytest.importorskip("mlflow")
    out = tmp_path / "run"
    (tmp_path / "a_file").write_text("")  # the store's folder cannot be made below a file
    r = run(tmp_path, *small_overrides(data_root), "logger=mlflow",
            f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/a_file/mlflow.db",
            f"hydra.run.dir={out}")
    warned = [ln for ln in (r.stdout + r.stderr).splitlines() if "logger mlflow failed" in ln]
    assert len(warned) == 1 and "the run goes on" in warned[0]
    assert json.loads((out / "result.json").read_text())["status"] == "completed"


CALLS = []


class Flaky:
    """A user's logger (by _target_) that fails at its first epoch."""

    def __init__(self, out_dir, sweep_dir=None):
        pass

    def start(self, cfg, name):
        CALLS.append("start")

    def epoch(self, step, row):
        CALLS.append(step)
        raise OSError("disk full")

    def finish(self, cfg, result, out_dir):
        CALLS.append("finish")


def test_a_logger_that_fails_mid_run_is_dropped(caplog):
    calls = CALLS
    cfg = OmegaConf.create({"logger": {"flaky": {"_target_": "test_loggers.Flaky"}},
                            "trusted_modules": ["test_loggers"]})
    group = loggers.Loggers(cfg, "/tmp", "run", None)
    assert group.epoch(1, {"val_acc": 0.5}) is False
    group.epoch(2, {"val_acc": 0.6})
    group.finish({"status": "completed"})
    assert calls == ["start", 1]  # dropped after its first failure
    [record] = [r for r in caplog.records if "logger flaky failed" in r.getMessage()]
    assert "OSError: disk full" in record.getMessage()
