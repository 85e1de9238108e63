"""What a newcomer meets when something goes wrong or ends: a bad value anywhere in a sweep is
one line and a non-zero exit (a grid refuses it before any job trains), jobs that fail while
training are listed at the end, every run and sweep ends by saying where its files are, the
resume hint, and a failed download that leaves nothing behind."""
import functools
import logging
import os
import re
import shutil
import subprocess
import sys

import pytest
import torchvision
from omegaconf import OmegaConf

from hydra_plugins.snn_sweep_optuna_sweeper.study_def import study_name
from snn_sweep import data
from snn_sweep.callbacks import SweepDone, sweep_done
from snn_sweep.errors import InputError
from snn_sweep.train import train
from test_sweep import ROOT, results, sweep, tiny


def error_lines(r):
    return [ln for ln in r.stderr.splitlines() if ln.strip()]


@pytest.mark.parametrize("swept, expected", [
    ("timesteps=1,0,2", "job 1 (timesteps=0): timesteps=0 is not allowed: an integer >= 1"),
    ("model=snn,foo", "job 1 (model=foo): In 'config': Could not find 'model/foo'"),
    ("encoder._target_=snn_sweep.encoders.rate,os.system",
     "job 1 (encoder._target_=os.system): encoder._target_='os.system'"),
])
def test_a_bad_job_in_a_grid_refuses_the_sweep_before_any_job_trains(data_root, tmp_path,
                                                                     swept, expected):
    out = tmp_path / "sweep"
    fixed = [] if swept.startswith("timesteps") else ["timesteps=2"]
    r = sweep("-m", swept, *tiny(data_root), *fixed, f"hydra.sweep.dir={out}", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    [line] = error_lines(r)
    assert line.startswith(expected) and line.endswith("; no job of this batch was run"), line
    assert sorted(os.listdir(out)) == ["multirun.yaml"]  # nothing trained


@pytest.mark.slow
def test_a_wrong_type_for_a_users_model_argument_refuses_the_grid(data_root, tmp_path):
    """`-m model.beta=0.9,abc` over the user's tutorial net (examples/byo): one line naming
    the key, the value and the type its constructor takes, before any job trains."""
    user, out = tmp_path / "my_project", tmp_path / "sweep"
    shutil.copytree(ROOT / "examples" / "byo", user)
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    r = subprocess.run([sys.executable, "-m", "snn_sweep", "--config-dir", "conf",
                        "model=tutorial5", "-m", "model.beta=0.9,abc", "timesteps=2",
                        *[o for o in tiny(data_root) if "hidden" not in o],
                        f"hydra.sweep.dir={out}"], cwd=user, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert error_lines(r) == ["job 1 (model.beta=abc): model.beta='abc' is not allowed: a float "
                              "(tutorial_net.Net's argument beta); no job of this batch was run"]
    assert sorted(os.listdir(out)) == ["multirun.yaml"]


@pytest.mark.slow
def test_jobs_that_fail_while_training_are_listed_after_the_others_ran(data_root, tmp_path):
    out = tmp_path / "sweep"
    # Adam at lr=1e30 makes the ANN's loss NaN in its second batch.
    r = sweep("-m", "model=ann", "optimizer.lr=0.001,1e30", *tiny(data_root),
              f"hydra.sweep.dir={out}", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = error_lines(r)[-1]
    assert line.startswith(f"1 of 2 jobs failed (each one's result.json says why): job 1 "
                           f"(optimizer.lr=1e+30) in {out}/1: NonFiniteLossError: training loss "
                           f"is nan"), line
    jobs = results(out)
    assert (jobs[0]["status"], jobs[1]["status"]) == ("completed", "failed")


@pytest.mark.slow
def test_a_study_that_reaches_a_bad_value(data_root, tmp_path):
    """Optuna's sweeper records the bad trial as failed; beyond max_failure_rate the study
    ends in one line."""
    out = tmp_path / "sweep"
    r = sweep("-m", "hparams_search=snn_optuna", *tiny(data_root),
              "hydra.sweeper.params.timesteps='choice(0)'", "hydra.sweeper.n_trials=2",
              "hydra.sweeper.max_failure_rate=0", "hydra.sweeper.storage=null",
              f"hydra.sweep.dir={out}", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert error_lines(r)[-1] == ("1 of 1 jobs returned no usable value (max_failure_rate=0.0): "
                                  "trial 0: InputError: timesteps=0 is not allowed: an integer "
                                  ">= 1")
    job = results(out)[0]
    assert job == {"status": "failed",
                   "error": "InputError: timesteps=0 is not allowed: an integer >= 1"}


@pytest.mark.slow
def test_a_run_ends_by_saying_where_its_files_are(data_root, tmp_path):
    r = sweep("model=ann", *tiny(data_root), f"hydra.run.dir={tmp_path}/run")
    assert f"Done: the run's files are in {tmp_path}/run" in r.stdout + r.stderr


def test_a_study_sweep_names_its_storage_in_the_aggregate_command():
    config = OmegaConf.create({"hydra": {"sweep": {"dir": "multirun/x"}, "sweeper": {
        "storage": "postgresql://u:secret@h/db", "study_name": "s"}}})
    assert sweep_done(config) == (
        "Done: one dir per job in multirun/x; tables and plots: python -m snn_sweep.aggregate "
        "multirun/x --study postgresql://u:***@h/db --study-name s")
    config.optimized_metric = "val_loss"  # a study's trials skip the test set: its metric
    assert sweep_done(config).endswith("--study-name s --metric val_loss")


def test_a_sweep_that_fails_does_not_end_with_the_done_line(caplog):
    """Hydra calls on_multirun_end in a `finally`, after a failed sweep too."""
    config = OmegaConf.create({"hydra": {"sweep": {"dir": "multirun/x"}}})
    with caplog.at_level(logging.INFO, logger="snn_sweep.callbacks"):
        with pytest.raises(InputError):
            try:
                raise InputError("a refused batch")
            finally:
                SweepDone().on_multirun_end(config)
        assert not caplog.messages
        SweepDone().on_multirun_end(config)
    assert caplog.messages == [sweep_done(config)]


def test_resume_without_resume_pt_says_how(make_cfg, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="snn_sweep.rundir"):
        train(make_cfg("model=ann", "trainer.resume=true"), str(tmp_path))
    [hint] = [m for m in caplog.messages if "no resume.pt" in m]
    assert "hydra.run.dir=<its run dir> trainer.resume=true" in hint


class OfflineMNIST(torchvision.datasets.MNIST):
    mirrors = ["http://127.0.0.1:9/"]  # the discard port: refused at once


@pytest.mark.parametrize("existing", ["nothing", "root", "raw with a file"])
def test_a_failed_download_leaves_nothing_behind(tmp_path, existing):
    root = tmp_path / "data"
    raw = root / "OfflineMNIST" / "raw"
    if existing != "nothing":
        root.mkdir()
    if existing == "raw with a file":
        raw.mkdir(parents=True)
        (raw / "mine.txt").write_text("kept")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(InputError, match="could not download OfflineMNIST"):
        data._read(functools.partial(OfflineMNIST), str(root), True, True)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_study_without_a_name_is_named_by_what_defines_it():
    """The name a sweep derives (and prints in its aggregate command): the same for the same
    command in any order and for keys that do not define the study, another for another
    budget; never None."""
    def name(*task: str, params=None) -> str:
        config = OmegaConf.create({"hydra": {"overrides": {"task": list(task)}, "sweeper": {
            "study_name": None, "params": params, "not_in_study": ["data.root"]}}})
        return study_name(config)

    first = name("model=tutorial5", "model.num_hidden=int(interval(8, 48))", "trainer.epochs=1")
    assert re.fullmatch(r"tutorial5-num_hidden-[0-9a-f]{8}", first)
    assert name("trainer.epochs=1", "data.root=/elsewhere", "model=tutorial5",
                "model.num_hidden=int(interval(8,48))") == first
    assert name("model=tutorial5", "trainer.epochs=1",
                params={"model.num_hidden": "int(interval(8, 48))"}) == first
    assert name("model=tutorial5", "model.num_hidden=int(interval(8, 48))",
                "trainer.epochs=2") != first
