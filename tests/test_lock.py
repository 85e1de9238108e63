"""requirements.txt (the lock) resolves on every platform the README promises: Linux x86-64 with
the CUDA packages, macOS arm64 and Windows x64 without them (they carry torch's own marker,
platform_system == "Linux"). pip cannot check this from Linux: `pip install --dry-run
--platform ...` still evaluates environment markers for the machine it runs on, so it asks for
torch's Linux-only CUDA packages on macOS too. uv's --python-platform evaluates them for the
target. Needs the package index; skipped where it cannot be reached. And the CPU-only install
of docs/install.md follows the lock."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the package index: make test runs it, pytest alone does not

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.txt"
OFFLINE = ("error sending request", "dns error", "Failed to fetch", "Could not connect",
           "Network is unreachable", "timed out")


@pytest.mark.parametrize("platform,cuda", [("x86_64-manylinux_2_28", True),
                                           ("aarch64-apple-darwin", False),
                                           ("x86_64-pc-windows-msvc", False)])
def test_lock_resolves_on(platform, cuda, tmp_path):
    uv = Path(sys.executable).with_name("uv")
    uv = str(uv) if uv.exists() else shutil.which("uv")
    if uv is None:
        pytest.skip("uv not installed (pip install -e '.[dev]')")
    env = {**os.environ, "MACOSX_DEPLOYMENT_TARGET": "14.0"}  # the oldest macOS torch supports
    # Wheels only, but norse (the bench extra) is published only as a pure-Python sdist, and
    # expelliarmus (Tonic's event-file reader, the events extra) has no macOS arm64 wheel: pip
    # builds it from its sdist there (a C compiler: Xcode's command line tools).
    r = subprocess.run([uv, "pip", "install", "--dry-run", "--python-platform", platform,
                        "--python-version", "3.11", "--target", str(tmp_path), "--only-binary", ":all:",
                        "--no-binary", "norse", "--no-binary", "expelliarmus", "-r", str(LOCK)],
                       capture_output=True, text=True, timeout=600, env=env)
    if r.returncode and any(word in r.stderr for word in OFFLINE):
        pytest.skip(f"package index unreachable: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-3000:]
    would = {ln.split()[1].split("==")[0].lower() for ln in r.stderr.splitlines()
             if ln.startswith(" + ")}
    assert {"torch", "torchvision", "snntorch", "numba", "optuna", "hydra-core"} <= would
    assert any(p.startswith("nvidia-") for p in would) == cuda
    assert ("triton" in would) == cuda


def test_cpu_only_install_is_the_lock_less_its_cuda_packages():
    """docs/install.md#cpu-only: torch and torchvision from PyTorch's CPU index at the lock's
    versions, then the lock through its grep, which drops exactly the lock's Linux-only lines
    (torch's CUDA stack: nvidia-*, cuda-*, triton) and keeps every other."""
    text = (ROOT / "docs" / "install.md").read_text().split("\n## CPU only\n", 1)[1]
    recipe = text.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [ln for ln in LOCK.read_text().splitlines() if ln and not ln.startswith("#")]
    pins = dict(ln.split("==", 1) for ln in lines if ln.startswith(("torch==", "torchvision==")))
    assert (f"pip install torch=={pins['torch']} torchvision=={pins['torchvision']} "
            f"--index-url https://download.pytorch.org/whl/cpu") in recipe
    [grep] = re.findall(r"<\((grep .*? requirements\.txt)\)", recipe)
    kept = subprocess.run(["bash", "-c", grep], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.splitlines()
    dropped = [ln for ln in lines if ln not in kept]
    linux_only = [ln for ln in lines if "sys_platform == 'linux'" in ln]
    assert dropped == linux_only and dropped
    assert all(ln.startswith(("nvidia-", "cuda-", "triton==")) for ln in dropped)
    assert {f"torch=={pins['torch']}", f"torchvision=={pins['torchvision']}"} <= set(kept)
