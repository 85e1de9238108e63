"""The README shows how to open a sweep's study in optuna-dashboard; this checks that the command
a user types (`optuna-dashboard sqlite:///FILE`) really serves a study kept in sqlite storage like
ours: it starts the console script on a free port and reads the study back through its HTTP API."""
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("optuna_dashboard",
                    reason="optuna-dashboard not installed (pip install -e '.[dashboard]')")
import optuna  # noqa: E402

STUDY, N_TRIALS = "tiny", 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_command() -> str:
    """The console script installed next to this interpreter (0.21.0 has no `python -m` entry)."""
    script = Path(sys.executable).with_name("optuna-dashboard")
    found = str(script) if script.exists() else shutil.which("optuna-dashboard")
    if found is None:
        pytest.skip("optuna_dashboard importable but its `optuna-dashboard` script is not on PATH")
    return found


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


@pytest.fixture
def dashboard(tmp_path):
    """A study of N_TRIALS trials in a fresh sqlite file, served by optuna-dashboard; yields its
    URL."""
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=N_TRIALS)

    port = free_port()
    log = open(tmp_path / "dashboard.log", "w+")
    proc = subprocess.Popen(
        [dashboard_command(), storage, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"optuna-dashboard exited with {proc.returncode}:\n{log.read()}")
            try:
                get_json(url + "/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"optuna-dashboard did not answer within 60 s:\n{log.read()}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_dashboard_serves_sqlite_study(dashboard):
    studies = get_json(dashboard + "/api/studies")["study_summaries"]
    by_name = {s["study_name"]: s for s in studies}
    assert list(by_name) == [STUDY]
    assert by_name[STUDY]["directions"] == ["maximize"]

    detail = get_json(f"{dashboard}/api/studies/{by_name[STUDY]['study_id']}")
    assert detail["name"] == STUDY
    assert len(detail["trials"]) == N_TRIALS
    assert all(t["state"] == "Complete" for t in detail["trials"])
    assert len(detail["best_trials"]) == 1
