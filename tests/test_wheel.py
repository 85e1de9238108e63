"""Installs like a library: the wheel holds the configs, and an install that is not editable
runs the card's sweep, the aggregator and the console scripts from a folder outside the checkout."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import pandas as pd

from conftest import small_overrides

pytestmark = pytest.mark.slow  # subprocess runs: make test runs them, pytest alone does not

ROOT = Path(__file__).resolve().parents[1]


def source_copy(tmp_path) -> Path:
    """The checkout less what is not built: setuptools leaves build/ and *.egg-info in the
    folder it builds."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "multirun", "outputs", "data",
        "__pycache__", ".pytest_cache", "docs", "notebooks"))
    return src


def test_wheel_builds_without_setuptools_warnings(tmp_path):
    """pyproject's packages name every folder the wheel ships (the config groups too), so the
    build prints none of setuptools' "Package would be ignored" blocks, one per folder left
    out."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path / "dist"), str(source_copy(tmp_path))],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Package would be ignored" not in r.stdout + r.stderr
    [wheel] = (tmp_path / "dist").glob("snn_sweep-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "snn_sweep/conf/model/snn.yaml" in names and "snn_sweep/nn/kernels/__init__.py" in names
    assert not any("__pycache__" in n or n.startswith(("tests/", "bench/")) for n in names)


def test_wheel_installs_and_sweeps_from_any_folder(tmp_path, data_root):
    src = source_copy(tmp_path)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
                    str(src)], check=True, capture_output=True, timeout=600)
    [wheel] = dist.glob("snn_sweep-*.whl")
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    py = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    # The dependencies (torch, hydra, ...) come from this environment's site-packages, seen
    # through a .pth line: a plain path, so this environment's editable snn_sweep stays out.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                    "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "PYTHONPATH")}

    def run(*cmd):
        r = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    where = run(py, "-c", "import snn_sweep, os; print(os.path.dirname(snn_sweep.__file__))")
    assert Path(where.stdout.strip()).is_relative_to(site)  # the wheel's copy, not the checkout
    assert (Path(where.stdout.strip()) / "conf" / "model" / "snn.yaml").is_file()
    tiny = [o for o in small_overrides(data_root) if not o.startswith("timesteps=")]
    bin_dir = py.parent
    run(bin_dir / "snn-sweep", "model=snn", "encoder=rate", "-m", "timesteps=1,10,25", *tiny,
        "hydra.sweep.dir=card")
    run(bin_dir / "snn-sweep-aggregate", "card")
    res = pd.read_csv(elsewhere / "card" / "results.csv")
    assert sorted(res["timesteps"]) == [1, 10, 25] and set(res["status"]) == {"completed"}
    version = json.loads((elsewhere / "card" / "0" / "result.json").read_text())
    assert version["snn_sweep_version"] == run(py, "-c", "import snn_sweep; print(snn_sweep."
                                               "__version__)").stdout.strip()
    run(py, "-m", "snn_sweep", "model=ann", *tiny, "hydra.run.dir=one")
    run(py, "-m", "snn_sweep.aggregate", "one")
    assert (elsewhere / "one" / "summary.csv").is_file()
