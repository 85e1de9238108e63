"""Runs ended early and finished later: SIGTERM and SIGINT stop at a batch with resume.pt and the
resume command, which ends as an uninterrupted run; an Optuna trial's test set skipped, then
evaluated on request."""
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, small_overrides
from snn_sweep.train import train

# 30 batches an epoch, many epochs: a signal sent after epoch 1 lands mid-training
ARGS = ["seed=3", "data.batch_size=10", "trainer.epochs=40", "scheduler=cosine"]
KEYS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]


def rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [[r[k] for k in KEYS] for r in csv.DictReader(f)]


def interrupted(data_root, run_dir, signum):
    """`python -m snn_sweep` in run_dir, sent signum once epoch 1 is written."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}  # a traceback would show, were there one
    proc = subprocess.Popen(
        [sys.executable, "-m", "snn_sweep", *small_overrides(data_root), *ARGS,
         f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.csv").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no epoch finished in 120 s"
        time.sleep(0.05)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_with_resume_pt_and_the_resume_command(data_root, tmp_path,
                                                                       signum):
    run_dir = tmp_path / "run"
    code, out = interrupted(data_root, run_dir, signum)
    assert code == 128 + signum, out
    assert "Traceback" not in out, out
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "interrupted" and signum.name in result["error"]
    assert (run_dir / "resume.pt").is_file()
    done = len(rows(run_dir))
    assert 1 <= done < 40, "the signal should land mid-training"
    lines = [line for line in out.splitlines() if "to resume:" in line]
    assert len(lines) == 1, out
    command = shlex.split(lines[0].split("to resume: ", 1)[1])
    assert command[:3] == ["python", "-m", "snn_sweep"]
    assert f"hydra.run.dir={run_dir}" in command and "trainer.resume=true" in command
    if signum != signal.SIGTERM:
        return
    # the printed command, run: it ends as the same run uninterrupted (seed, threads=1)
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {done}" in resumed.stdout + resumed.stderr
    full = tmp_path / "full"
    subprocess.run([sys.executable, "-m", "snn_sweep", *small_overrides(data_root), *ARGS,
                    f"hydra.run.dir={full}"], cwd=ROOT, check=True, capture_output=True,
                   timeout=300)
    assert rows(run_dir) == rows(full)
    a, b = (json.loads((d / "result.json").read_text()) for d in (run_dir, full))
    assert a["status"] == "completed" and not (run_dir / "resume.pt").exists()
    for key in ("objective", "val_acc", "val_loss", "test_acc", "test_loss", "best_epoch",
                "spikes_per_sample"):
        assert a[key] == b[key], key


def test_an_optuna_trial_skips_the_test_set_and_evaluates_it_on_request(make_cfg, tmp_path):
    trial = {"optuna_study": "s", "optuna_trial": 0, "optuna_storage": None}
    train(make_cfg("trainer.epochs=2"), str(tmp_path / "trial"), extra=trial)
    skipped = json.loads((tmp_path / "trial" / "result.json").read_text())
    assert skipped["status"] == "completed" and skipped["test_skipped"] is True
    assert "test_acc" not in skipped and "spikes_per_sample" not in skipped
    train(make_cfg("trainer.epochs=2"), str(tmp_path / "run"))
    full = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "test_skipped" not in full
    # later: the trial's dir, trainer.test=true; nothing is trained again
    train(make_cfg("trainer.epochs=2", "trainer.test=true"), str(tmp_path / "trial"))
    tested = json.loads((tmp_path / "trial" / "result.json").read_text())
    assert "test_skipped" not in tested
    for key in ("test_acc", "test_loss", "spikes_per_sample", "energy_pj_per_sample",
                "objective", "train_time_s"):
        assert tested[key] == (skipped if key == "train_time_s" else full)[key], key
    # trainer.test=true inside a trial evaluates it at once
    train(make_cfg("trainer.epochs=1", "trainer.test=true"), str(tmp_path / "t2"), extra=trial)
    assert "test_acc" in json.loads((tmp_path / "t2" / "result.json").read_text())


def test_a_job_submitit_requeued_resumes_by_itself(monkeypatch):
    from omegaconf import OmegaConf

    from snn_sweep.__main__ import requeued
    slurm = OmegaConf.create({"launcher": {
        "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}})
    local = OmegaConf.create({"launcher": {
        "_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}})
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert not requeued(slurm)  # its first start
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert not requeued(slurm)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued(slurm) and not requeued(local)
