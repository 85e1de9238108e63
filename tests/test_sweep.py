"""Sweeps end to end on tiny data: the card's grid, Optuna studies (continued, failing, shared
on PostgreSQL), each followed by the aggregator."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

import optuna
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import CONF_DIR, run_cli, small_overrides
from hydra_plugins.snn_sweep_optuna_sweeper.storage import open_storage
from snn_sweep.aggregate import main as aggregate

pytestmark = pytest.mark.slow  # subprocess sweeps: make test runs them, pytest alone does not

ROOT = Path(__file__).resolve().parents[1]


def sweep(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = run_cli(*args)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def tiny(data_root: str) -> List[str]:
    """small_overrides without timesteps (swept or tuned here)."""
    return [o for o in small_overrides(data_root) if not o.startswith("timesteps=")]


def results(sweep_dir: Path) -> dict:
    return {int(p.parent.name): json.loads(p.read_text()) for p in sweep_dir.glob("*/result.json")}


def test_card_grid_then_aggregate(data_root, tmp_path, capsys):
    out = tmp_path / "sweep"
    r = sweep("model=snn", "encoder=rate", "-m", "timesteps=1,10,25", *tiny(data_root),
              f"hydra.sweep.dir={out}")
    assert f"Done: one dir per job in {out}; tables and plots: python -m snn_sweep.aggregate " \
        f"{out}\n" in r.stdout + r.stderr
    assert sorted(results(out)) == [0, 1, 2]
    assert (out / "multirun.yaml").is_file()
    aggregate([str(out)])
    printed = capsys.readouterr().out
    res = pd.read_csv(out / "results.csv")
    assert len(res) == 3 and set(res["status"]) == {"completed"}
    assert sorted(res["timesteps"]) == [1, 10, 25]
    assert set(res["encoder"]) == {"rate"} and set(res["model"]) == {"snn"}
    for col in ("job_dir", "val_acc", "test_acc", "spikes_per_sample", "train_time_s", "seed"):
        assert col in res, col
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["timesteps"]) == [1, 10, 25] and list(summary["test_acc_count"]) == [1] * 3
    assert "grouped by timesteps" in printed and re.search(r"^\|\s+timesteps\s+\|", printed, re.M)
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["metric"]) >= {"train_loss", "val_acc"} and curves["timesteps"].nunique() == 3
    for png in ("accuracy_vs_timesteps.png", "learning_curves.png"):
        assert (out / png).stat().st_size > 1000


def optuna_args(data_root: str, db: Path, sweep_dir: Path, n: int, *extra: str) -> List[str]:
    return ["-m", "hparams_search=snn_optuna", *tiny(data_root), "model.hidden=[32]",
            f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=t",
            f"hydra.sweeper.n_trials={n}", f"hydra.sweep.dir={sweep_dir}", *extra]


def test_optuna_study_continues(data_root, tmp_path, capsys):
    db, out = tmp_path / "db" / "studies.db", tmp_path / "sweep"  # db's folder is created
    sweep(*optuna_args(data_root, db, out, 2))
    first = results(out)
    r = sweep(*optuna_args(data_root, db, out, 2))  # same command: continues the study
    assert "Study t in sqlite:///" in r.stdout and "(2 trials so far)" in r.stdout
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{db}")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    jobs = results(out)
    assert sorted(first) == [0, 1] and sorted(jobs) == [0, 1, 2, 3]  # nothing overwritten
    for t in study.trials:
        job = jobs[t.number]  # job dir N is trial N
        assert (job["optuna_trial"], job["optuna_study"]) == (t.number, "t")
        assert job["optuna_storage"] == f"sqlite:///{db}"
        assert Path(t.user_attrs["job_dir"]) == out / str(t.number)
        assert job["objective"] == pytest.approx(t.value)
        assert job["timesteps"] == t.params["timesteps"] and job["encoder"] == t.params["encoder"]
    # the continued run drew new points instead of replaying the seeded first ones
    assert study.trials[2].params != study.trials[0].params
    assert {Path(j["optuna_storage"]).name for j in jobs.values()} == {"studies.db"}

    aggregate([str(out), "--study", f"sqlite:///{db}"])
    printed = capsys.readouterr().out
    assert "study 't': 4 trials, 4 of 4 jobs mapped to one" in printed
    res = pd.read_csv(out / "results.csv")
    assert sorted(res["optuna_trial"]) == [0, 1, 2, 3] and set(res["trial_state"]) == {"COMPLETE"}
    assert len(pd.read_csv(out / "trials.csv")) == 4
    trials_md = (out / "trials.md").read_text().splitlines()
    assert trials_md[0].split("|")[1].strip() == "number" and len(trials_md) == 2 + 4
    assert (out / "optuna_history.png").stat().st_size > 1000


def test_byo_study_without_a_name_continues_and_refuses_another_budget(data_root, tmp_path,
                                                                       monkeypatch):
    """hydra/sweeper=optuna_trials with no study_name (the README's bring-your-own study): the
    same command twice fills one study with a derived name; the printed aggregate command runs;
    another budget or search space for that study is refused in one line naming both."""
    user = tmp_path / "my_project"
    shutil.copytree(ROOT / "examples" / "byo", user)
    db = user / "study.db"
    base = ["--config-dir", "conf", "-m", "hydra/sweeper=optuna_trials", "model=tutorial5",
            "encoder=rate", "timesteps=3", *[o for o in tiny(data_root) if "hidden" not in o],
            "model.num_hidden=int(interval(8, 48))", "hydra.sweeper.n_trials=2",
            "trainer.epochs=1", f"hydra.sweeper.storage=sqlite:///{db}"]

    def launch(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        r = subprocess.run([sys.executable, "-m", "snn_sweep", *base, *args], cwd=user,
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 or not check, r.stderr[-3000:]
        return r
    printed = [launch(f"hydra.sweep.dir=multirun/s{i}") for i in (1, 2)]
    names = [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")]
    assert len(names) == 1 and names[0].startswith("rate-tutorial5-num_hidden-"), names
    held = optuna.load_study(study_name=names[0], storage=f"sqlite:///{db}")
    assert len(held.trials) == 4 and held.user_attrs["study_definition"]["trainer.epochs"] == "1"
    assert not {"data.root", "trainer.threads"} & set(held.user_attrs["study_definition"])
    command = (printed[1].stdout + printed[1].stderr).split("tables and plots: python -m snn_sweep.aggregate ")[1]
    assert f"--study-name {names[0]}" in command
    monkeypatch.chdir(user)
    aggregate(command.splitlines()[0].split())  # the printed command, as printed
    assert sorted(pd.read_csv(user / "multirun" / "s2" / "results.csv")["optuna_trial"]) == [2, 3]
    for change, held_text, asked in (
            (["trainer.epochs=2"], "trainer.epochs=1", "trainer.epochs=2"),
            (["model.num_hidden=int(interval(8, 64))"], "high=48", "high=64")):
        r = launch(f"hydra.sweeper.study_name={names[0]}", *change, check=False)
        assert r.returncode != 0 and "Traceback" not in r.stderr
        line = [x for x in r.stderr.splitlines() if "holds trials of" in x]
        assert len(line) == 1 and held_text in line[0] and asked in line[0], r.stderr[-2000:]
    assert len(optuna.load_study(study_name=names[0], storage=f"sqlite:///{db}").trials) == 4
    launch(f"hydra.sweeper.study_name={names[0]}", "trainer.epochs=2",
           "hydra.sweeper.allow_changes=true", "hydra.sweeper.n_trials=1")
    assert len(optuna.load_study(study_name=names[0], storage=f"sqlite:///{db}").trials) == 5


def test_a_preset_study_refuses_another_budget(data_root, tmp_path):
    db, out = tmp_path / "s.db", tmp_path / "sweep"
    sweep(*optuna_args(data_root, db, out, 1))
    r = sweep(*optuna_args(data_root, db, out, 1, "data.train_subset=500"), check=False)
    assert r.returncode != 0 and "study 't' holds trials of data.train_subset unset; this " \
        "launch asks data.train_subset=500" in r.stderr, r.stderr[-2000:]


def test_failing_trials_do_not_stop_the_study(data_root, tmp_path, capsys):
    db, out = tmp_path / "s.db", tmp_path / "sweep"
    # Adam at lr=1e30 makes the ANN's loss NaN in its second batch; the seeded sampler
    # proposes both values within four trials.
    r = sweep("-m", "hparams_search=ann_optuna", *tiny(data_root), "optimizer=adam",
              "optimizer.lr=choice(0.001,1e30)", "hydra.sweeper.n_trials=4",
              "hydra.sweeper.sampler.seed=1234", f"hydra.sweeper.storage=sqlite:///{db}",
              f"hydra.sweep.dir={out}")
    assert "Traceback" not in r.stderr
    study = optuna.load_study(study_name="ann_optuna", storage=f"sqlite:///{db}")
    states = {t.number: t.state.name for t in study.trials}
    assert len(states) == 4 and set(states.values()) == {"COMPLETE", "FAIL"}  # no RUNNING left
    failed = [n for n, state in states.items() if state == "FAIL"]
    assert re.search(rf"{len(failed)} of 4 trials failed \(within max_failure_rate=1.0\): "
                     rf"trial {failed[0]}: NonFiniteLossError: training loss is nan",
                     r.stdout + r.stderr)
    jobs = results(out)
    # a trial that draws a point an earlier one trained is not trained again: "duplicate"
    done = {n: jobs[n]["status"] for n, state in states.items() if state == "COMPLETE"}
    assert set(done.values()) <= {"completed", "duplicate"} and "completed" in done.values()
    for n, state in states.items():
        if state == "FAIL":
            assert jobs[n]["status"] == "failed"
            assert jobs[n]["error"].startswith("NonFiniteLossError: training loss is nan")
            assert study.trials[n].user_attrs["job_status"] == "failed"
    aggregate([str(out), "--study", f"sqlite:///{db}"])
    printed = capsys.readouterr().out
    res = pd.read_csv(out / "results.csv").set_index("optuna_trial")
    for n, state in states.items():
        assert res.loc[n, "trial_state"] == state
        assert res.loc[n, "status"] == (done[n] if state == "COMPLETE" else "failed")
    assert "not completed:" in printed and "NonFiniteLossError" in printed


def test_study_where_every_trial_fails_ends_with_one_clear_error(data_root, tmp_path):
    db, out = tmp_path / "s.db", tmp_path / "sweep"
    r = sweep("-m", "hparams_search=ann_optuna", *tiny(data_root), "optimizer=adam",
              "optimizer.lr=1e30", "hydra.sweeper.n_trials=2",
              f"hydra.sweeper.storage=sqlite:///{db}", f"hydra.sweep.dir={out}", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no trial of study 'ann_optuna' completed (2 failed, 0 pruned)" in r.stderr
    study = optuna.load_study(study_name="ann_optuna", storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert [j["status"] for j in results(out).values()] == ["failed", "failed"]


def test_wrong_direction_for_the_metric_is_refused(data_root, tmp_path):
    r = sweep("-m", "hparams_search=snn_optuna", *tiny(data_root), "optimized_metric=val_loss",
              f"hydra.sweeper.storage=sqlite:///{tmp_path / 's.db'}",
              f"hydra.sweep.dir={tmp_path / 'sweep'}", check=False)
    assert r.returncode == 1
    assert "optimized_metric=val_loss needs hydra.sweeper.direction=minimize" in r.stderr
    assert not list((tmp_path / "sweep").glob("*/result.json"))


def test_unusable_return_is_failed_not_left_running():
    from hydra.core.utils import JobReturn, JobStatus
    from hydra_plugins.snn_sweep_optuna_sweeper._impl import _values
    from hydra_plugins.snn_sweep_optuna_sweeper.storage import public_storage

    for value, n in ((float("nan"), 1), (float("inf"), 1), (None, 1), ("x", 1), (0.5, 2),
                     ((0.5, float("nan")), 2), ((0.5, 1.0, 2.0), 2)):
        ret = JobReturn(status=JobStatus.COMPLETED, _return_value=value)
        with pytest.raises(ValueError, match="finite number"):
            _values(ret, n)  # the sweeper tells Optuna FAIL
    assert _values(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5), 1) == [0.5]
    assert _values(JobReturn(status=JobStatus.COMPLETED, _return_value=(0.5, 3)), 2) == [0.5, 3]
    pruned = JobReturn(status=JobStatus.FAILED, _return_value=optuna.TrialPruned("epoch 1"))
    with pytest.raises(optuna.TrialPruned):
        _values(pruned, 1)
    assert public_storage("postgresql+psycopg2://u:secret@h:5/db") == \
        "postgresql+psycopg2://u:***@h:5/db"


def study(db: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def test_pruned_study_prunes_and_every_trial_has_its_epochs(data_root, tmp_path, capsys):
    db, out = tmp_path / "s.db", tmp_path / "sweep"
    # a learning rate that barely learns: its trials fall below the median and are pruned
    r = sweep("-m", "hparams_search=snn_optuna_pruned", *tiny(data_root), "model.hidden=[32]",
              "trainer.epochs=3", "timesteps=int(interval(2,6))", "hydra.sweeper.n_trials=8",
              "optimizer.lr=choice(3e-3,1e-7)", "hydra.sweeper.pruner.n_startup_trials=2",
              f"hydra.sweeper.storage=sqlite:///{db}", f"hydra.sweep.dir={out}")
    assert "Error executing job" not in r.stderr and "Warning" not in r.stderr
    assert re.search(r"Trial \d+: pruned after epoch \d", r.stdout + r.stderr)
    trials = study(db, "snn_optuna_pruned").trials
    states = [t.state.name for t in trials]
    assert set(states) == {"COMPLETE", "PRUNED"}, states
    jobs = results(out)
    for t in trials:
        job = jobs[t.number]
        epochs = sorted(t.intermediate_values)
        assert epochs == list(range(1, len(epochs) + 1))  # one value per epoch, in order
        assert t.intermediate_values[epochs[-1]] == pytest.approx(job["val_acc"])
        if t.state.name == "COMPLETE":
            assert job["status"] == "completed" and epochs == [1, 2, 3]
        else:
            assert job["status"] == "pruned" and job["pruned_epoch"] == epochs[-1] < 3
            assert "test_acc" not in job  # a pruned run never looks at the test set
            assert t.user_attrs["job_status"] == "pruned"
    aggregate([str(out), "--study", f"sqlite:///{db}"])
    printed = capsys.readouterr().out
    assert "pruned (kept out of the summary):" in printed
    summary = pd.read_csv(out / "summary.csv")
    assert summary["pruned"].sum() == states.count("PRUNED")


@pytest.mark.parametrize("pruner", ["hyperband", "wilcoxon"])
def test_other_pruners_run(data_root, tmp_path, pruner):
    db = tmp_path / "s.db"
    r = sweep("-m", "hparams_search=snn_optuna", f"hydra/sweeper/pruner={pruner}",
              *tiny(data_root), "model.hidden=[32]", "trainer.epochs=3", "timesteps=3",
              "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage=sqlite:///{db}",
              f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert "Warning" not in r.stderr
    assert f"pruner optuna.pruners.{pruner.capitalize()}Pruner" in r.stdout
    jobs = results(tmp_path / "sweep")
    for t in study(db, "snn_optuna").trials:
        assert t.state.name in ("COMPLETE", "PRUNED"), jobs[t.number].get("error")
        assert len(t.intermediate_values) >= 1


@pytest.mark.parametrize("metric", ["val_energy_pj_per_sample", "val_effective_acs_per_sample"])
def test_pareto_study_returns_accuracy_and_energy(data_root, tmp_path, capsys, metric):
    """Accuracy against energy, or against NeuroBench's effective ACs (energy.py)."""
    db, out = tmp_path / "s.db", tmp_path / "sweep"
    r = sweep("-m", "hparams_search=snn_pareto", *tiny(data_root), "model.hidden=[32]",
              "timesteps=int(interval(2,8))", "hydra.sweeper.n_trials=5", f"pareto_metric={metric}",
              f"hydra.sweeper.storage=sqlite:///{db}", f"hydra.sweep.dir={out}")
    assert "Warning" not in r.stderr
    s = study(db, "snn_pareto")
    assert [d.name for d in s.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert s.metric_names == ["val_acc", metric]
    jobs = results(out)
    for t in s.trials:
        job = jobs[t.number]
        assert t.values == pytest.approx([job["val_acc"], job[metric]])
        assert job["pareto_metric"] == metric
        last = pd.read_csv(out / str(t.number) / "metrics.csv").iloc[-1]  # on the val set
        assert t.values[1] == pytest.approx(last[metric]) and last[metric] > 0
    front = {t.number for t in s.best_trials}
    solutions = OmegaConf.load(out / "optimization_results.yaml").solutions
    assert len(solutions) == len(front) >= 1
    aggregate([str(out), "--study", f"sqlite:///{db}"])
    capsys.readouterr()
    pareto = pd.read_csv(out / "pareto.csv")
    assert set(pareto.loc[pareto["on_front"], "number"]) == front
    assert (out / "pareto.png").stat().st_size > 1000


def test_repeats_in_a_study_record_each_seed(data_root, tmp_path):
    db, out = tmp_path / "s.db", tmp_path / "sweep"
    sweep("-m", "hparams_search=snn_optuna", *tiny(data_root), "model.hidden=[32]", "repeats=2",
          "seed=5", "timesteps=3", "hydra.sweeper.n_trials=1",
          f"hydra.sweeper.storage=sqlite:///{db}", f"hydra.sweep.dir={out}")
    [t] = study(db, "snn_optuna").trials
    job = results(out)[0]
    seeds = [json.loads((out / "0" / f"seed_{s}" / "result.json").read_text()) for s in (5, 6)]
    values = [r["val_acc"] for r in seeds]
    assert [r["seed"] for r in seeds] == [5, 6] and job["seeds"] == [5, 6]
    assert t.value == pytest.approx(sum(values) / 2) == job["objective"]
    assert t.user_attrs["objective_per_seed"] == pytest.approx(values)
    assert t.user_attrs["objective_std"] == pytest.approx(job["objective_std"])
    assert sorted(t.intermediate_values) == [1, 2]  # epoch 1 of seed 5, then of seed 6


@pytest.mark.parametrize("preset,overrides,message", [
    ("snn_optuna", ["hydra/sweeper/pruner=median", "hydra.sweeper.storage=null"],
     "hydra.sweeper.pruner needs hydra.sweeper.storage"),
    ("snn_optuna", ["hydra.sweeper.direction=[maximize,minimize]"],
     "two directions need pareto_metric"),
    ("snn_pareto", ["hydra.sweeper.direction=[maximize,maximize]"],
     "pareto_metric=val_energy_pj_per_sample needs hydra.sweeper.direction=[maximize,minimize]"),
    ("snn_pareto", ["hydra/sweeper/pruner=median"],
     "hydra.sweeper.pruner works with one direction only"),
])
def test_sweeper_settings_that_cannot_work_are_refused(data_root, tmp_path, preset, overrides,
                                                       message):
    r = sweep("-m", f"hparams_search={preset}", *tiny(data_root),
              f"hydra.sweeper.storage=sqlite:///{tmp_path / 's.db'}", *overrides,
              f"hydra.sweep.dir={tmp_path / 'sweep'}", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert message in r.stderr.strip().splitlines()[-1]
    assert not list((tmp_path / "sweep").glob("*/result.json"))


# --- a study shared through PostgreSQL ------------------------------------------------------

def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres():
    """A private PostgreSQL cluster on a free local port, stopped afterwards. Postgres refuses
    to run as root, so as root it runs as the postgres user."""
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2-binary (extra `postgres`) not installed")
    as_user: List[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no postgres user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="snn-sweep-pg-"))
    if as_user:
        shutil.chown(base, "postgres")
    data = base / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run(as_user + list(cmd), check=True, capture_output=True,  # noqa
                                      timeout=60)
    try:
        run(str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        run(str(pg / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start")
        yield f"postgresql+psycopg2://postgres:secret@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(as_user + [str(pg / "pg_ctl"), "-D", str(data), "-m", "fast",
                                      "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def test_shared_study_on_postgres(postgres, data_root, tmp_path):
    # two workers (here one after the other) on one study: trial numbers come from the server
    for worker in ("a", "b"):
        sweep("-m", "hparams_search=snn_optuna", *tiny(data_root), "model.hidden=[32]",
              "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={postgres}",
              "hydra.sweeper.study_name=shared", f"hydra.sweep.dir={tmp_path / worker}")
    study = optuna.load_study(study_name="shared", storage=postgres)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    a, b = results(tmp_path / "a"), results(tmp_path / "b")
    assert (list(a), list(b)) == ([0], [1])
    assert b[1]["optuna_storage"].startswith("postgresql+psycopg2://postgres:***@")
    assert "secret" not in json.dumps(b[1])


def test_a_job_prunes_only_with_a_configured_pruner(tmp_path):
    from snn_sweep.optuna_trial import TrialReporter

    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(study_name="s", storage=url, direction="maximize")
    for value in (0.9, 0.9, 0.9, 0.9, 0.9, 0.9):  # finished trials a median pruner compares with
        trial = s.ask()
        trial.report(value, 1)
        s.tell(trial, value)
    number = s.ask().number
    none = TrialReporter(url, "s", number)
    assert isinstance(none.trial.study.pruner, optuna.pruners.NopPruner)
    assert none(1, 0.1) is False  # far below the median, yet no pruner was asked for
    median = TrialReporter(url, "s", s.ask().number, OmegaConf.create(
        {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5}))
    assert median(1, 0.1) is True


def workers_together(data_root: str, tmp_path: Path, storage: str, n: int = 4) -> optuna.Study:
    """Two workers started at the same moment on one study, n trials each, as a cluster job
    array would start them; both must come up and finish."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "snn_sweep", "-m", "hparams_search=snn_optuna", *tiny(data_root),
         "model.hidden=[16]", "timesteps=2", f"hydra.sweeper.n_trials={n}",
         f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared",
         f"hydra.sweep.dir={tmp_path / worker}"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for worker in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    return optuna.load_study(study_name="shared", storage=open_storage(storage))


def assert_no_point_twice(study: optuna.Study, n: int) -> None:
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * n
    points = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(points) == n  # every trial a different point: none computed twice


def test_workers_started_together_on_postgres_never_duplicate_a_point(postgres, data_root,
                                                                      tmp_path):
    assert_no_point_twice(workers_together(data_root, tmp_path, postgres), 8)


def test_workers_started_together_on_a_journal_file(data_root, tmp_path, capsys):
    url = f"journal:///{tmp_path / 'studies.log'}"  # an absolute path: four slashes
    study = workers_together(data_root, tmp_path, url)
    assert_no_point_twice(study, 8)
    assert {t.user_attrs["job_dir"].split("/")[-2] for t in study.trials} == {"a", "b"}
    aggregate([str(tmp_path / "a"), str(tmp_path / "b"), "--study", url])
    assert "study 'shared': 8 trials, 8 of 8 jobs mapped to one" in capsys.readouterr().out


def test_the_same_seed_draws_the_same_points(data_root, tmp_path):
    """One worker, the same seed: a study replays exactly (each trial seeded by its number);
    a study of another name, with the same seed, draws other points."""
    params = []
    for run, name in (("x", "snn_optuna"), ("y", "snn_optuna"), ("z", "other")):
        sweep("-m", "hparams_search=snn_optuna", *tiny(data_root), "model.hidden=[16]",
              "timesteps=2", "hydra.sweeper.n_trials=3", f"hydra.sweeper.study_name={name}",
              f"hydra.sweeper.storage=sqlite:///{tmp_path / run}.db",
              f"hydra.sweep.dir={tmp_path / run}")
        params.append([t.params for t in study(tmp_path / f"{run}.db", name).trials])
    assert params[0] == params[1] and len({str(p) for p in params[0]}) == 3
    assert not {str(p) for p in params[0]} & {str(p) for p in params[2]}


def test_a_killed_sweep_leaves_no_running_trial(data_root, tmp_path):
    """kill -9 mid-trial (a time limit, an OOM kill): the next sweep on the study finds the
    trial's heartbeat stale, fails it, asks its parameters again and completes its own."""
    import signal
    import time

    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["-m", "hparams_search=snn_optuna", *tiny(data_root), "model.hidden=[16]",
            "timesteps=2", f"hydra.sweeper.storage={url}", "hydra.sweeper.study_name=k",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    first = subprocess.Popen([sys.executable, "-m", "snn_sweep", *args, "trainer.epochs=1000",
                              f"hydra.sweep.dir={tmp_path / 'first'}"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "first" / "0" / "metrics.csv").exists():  # mid-trial
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert [t.state.name for t in study(tmp_path / "s.db", "k").trials] == ["RUNNING"]
    time.sleep(4)  # past the grace period: nobody beats for trial 0 any more
    sweep(*args, "hydra.sweeper.n_trials=2", "hydra.sweeper.retry_failed_trials=1",
          "hydra.sweeper.allow_changes=true",  # trainer.epochs back to the default
          f"hydra.sweep.dir={tmp_path / 'second'}")
    trials = study(tmp_path / "s.db", "k").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].params == trials[0].params  # the killed trial's point, asked again
    assert trials[1].system_attrs["failed_trial"] == 0


def test_heartbeats_keep_a_long_trial_alive(data_root, tmp_path):
    """Another worker's asks fail stale trials; a trial that runs past the grace period is not
    one of them while its sweeper lives and beats."""
    import signal
    import time

    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["-m", "hparams_search=snn_optuna", *tiny(data_root), "model.hidden=[16]",
            "timesteps=2", f"hydra.sweeper.storage={url}", "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=2"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    long = subprocess.Popen([sys.executable, "-m", "snn_sweep", *args, "trainer.epochs=100000",
                             "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'a'}"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "a" / "0" / "metrics.csv").exists():
            assert long.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(3)  # the long trial has run past the grace period
        sweep(*args, "hydra.sweeper.n_trials=2", "hydra.sweeper.allow_changes=true",  # epochs
              f"hydra.sweep.dir={tmp_path / 'b'}")
        assert long.poll() is None  # still training while the other worker asked twice
        states = [t.state.name for t in study(tmp_path / "s.db", "snn_optuna").trials]
        assert states == ["RUNNING", "COMPLETE", "COMPLETE"]
    finally:
        os.killpg(long.pid, signal.SIGKILL)
        long.wait()


def test_relaunching_a_grid_finishes_only_what_is_missing(data_root, tmp_path):
    out = tmp_path / "sweep"
    args = ("-m", "seed=0,1,2", *tiny(data_root), "timesteps=2", f"hydra.sweep.dir={out}")
    sweep(*args)
    stamps = {j: (out / j / "metrics.csv").stat().st_mtime_ns for j in "012"}
    (out / "1" / "result.json").unlink()  # as if job 1 had been killed
    r = sweep(*args, "trainer.resume=true")
    assert r.stdout.count("already holds a completed run of this config") == 2
    after = {j: (out / j / "metrics.csv").stat().st_mtime_ns for j in "012"}
    assert [after[j] == stamps[j] for j in "012"] == [True, False, True]
    assert [results(out)[j]["status"] for j in range(3)] == ["completed"] * 3


@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local",
                                       "hydra.launcher.cpus_per_task=1"]])
def test_launchers_run_a_grid(data_root, tmp_path, launcher):
    pytest.importorskip("hydra_plugins.hydra_" + launcher[0].split("=")[1].split("_")[0]
                        + "_launcher")
    out = tmp_path / "sweep"
    sweep("-m", *launcher, "seed=0,1", *[o for o in tiny(data_root) if "threads" not in o],
          "timesteps=2", f"hydra.sweep.dir={out}")
    jobs = results(out)
    assert sorted(jobs) == [0, 1] and [jobs[j]["seed"] for j in (0, 1)] == [0, 1]
    # two jobs side by side on this machine: jobs x threads <= cores
    cores = os.cpu_count()
    assert all(j["status"] == "completed" for j in jobs.values())
    assert all(j["context"]["threads"] == (max(1, cores // 2) if "joblib" in launcher[0] else 1)
               for j in jobs.values())


def test_an_optuna_study_with_parallel_jobs(data_root, tmp_path):
    pytest.importorskip("joblib")
    db, out = tmp_path / "s.db", tmp_path / "sweep"
    sweep("-m", "hparams_search=snn_optuna", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
          "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4", *tiny(data_root),
          "model.hidden=[16]", "timesteps=2", f"hydra.sweeper.storage=sqlite:///{db}",
          f"hydra.sweep.dir={out}")
    trials = study(db, "snn_optuna").trials
    assert_no_point_twice(study(db, "snn_optuna"), 4)  # two trials asked at once, each its own
    jobs = results(out)
    assert all(jobs[t.number]["optuna_trial"] == t.number for t in trials)  # job dir N: trial N


def test_slurm_preset_composes():
    from hydra import compose, initialize_config_dir

    from conftest import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.cpus_per_task, launcher.timeout_min, launcher.mem_gb) == (4, 120, 16)


# What make tune-recipes passed on the command line, after recipe.yaml's params, before the
# recipes' own search spaces moved to hparams_search/recipe_space/ (issue 39).
MAKEFILE_SPACES = {"snn_rate": ["timesteps=int(interval(8,25))"],
                   "snn_direct": ["timesteps=int(interval(8,25))"],
                   "csnn": ["encoder=choice(direct,rate)", "timesteps=int(interval(4,8))"],
                   "csnn_bn": ["timesteps=int(interval(4,8))"]}


def search_space(overrides: List[str], command_line: List[str] = ()) -> list:
    """hparams_search=recipe's search space as the sweeper builds it (hydra.sweeper.params,
    then the command line's), (name, distribution) in the order Optuna draws them."""
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    with initialize_config_dir(config_dir=CONF_DIR):
        cfg = compose("config", overrides=["hparams_search=recipe", *overrides],
                      return_hydra_config=True)
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    space, _, _ = create_params_from_overrides(params + list(command_line))
    return list(space.items())


def test_each_recipe_studies_the_space_the_makefile_gave_it():
    recipes = sorted(p.stem for p in (Path(CONF_DIR) / "recipe").glob("*.yaml"))
    options = Path(CONF_DIR) / "hparams_search" / "recipe_space"
    assert sorted(p.stem for p in options.glob("*.yaml")) == recipes  # one each, maybe empty
    make = subprocess.run(["make", "-n", "-o", ".venv/.installed", "tune-recipes", "DATA=d"],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert " recipe=$r hparams_search/recipe_space=$r " in make and "case $r" not in make
    events = ("nmnist", "dvs_gesture", "shd")  # not in make tune-recipes: their data are not here
    for r in recipes:
        space = dict(search_space([f"recipe={r}", f"hparams_search/recipe_space={r}"]))
        if r in events:
            assert "timesteps" in space and "augment" not in space, r  # augment fixed to none
            continue
        before = search_space([f"recipe={r}"], MAKEFILE_SPACES.get(r, []))
        assert list(space.items()) == before, r
    assert [name for name, _ in search_space(["hparams_search/recipe_space=csnn"])] == \
        ["optimizer.lr", "optimizer.weight_decay", "model.dropout", "augment", "encoder",
         "timesteps"]


def test_a_run_killed_with_sigkill_resumes_to_the_same_end(data_root, tmp_path):
    """kill -9 once the first epoch is saved, then trainer.resume=true: the same end as a run
    that was never interrupted (1 thread)."""
    import signal
    import time

    args = [*tiny(data_root), "timesteps=25", "model.hidden=[256]", "trainer.epochs=3"]
    sweep(*args, f"hydra.run.dir={tmp_path / 'whole'}")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    run = subprocess.Popen([sys.executable, "-m", "snn_sweep", *args,
                            f"hydra.run.dir={tmp_path / 'cut'}"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "cut" / "metrics.csv").exists():  # epoch 1 saved
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()
    if json.loads((tmp_path / "cut" / "result.json").read_text())["status"] == "completed":
        pytest.skip("the run finished before the kill landed")  # a very fast machine
    sweep(*args, "trainer.resume=true", f"hydra.run.dir={tmp_path / 'cut'}")
    whole, cut = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("whole", "cut"))
    for key in ("val_acc", "val_loss", "test_acc", "test_loss"):
        assert cut[key] == whole[key], key
    curves = [pd.read_csv(tmp_path / d / "metrics.csv") for d in ("whole", "cut")]
    columns = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert curves[0][columns].equals(curves[1][columns]) and len(curves[1]) == 3
