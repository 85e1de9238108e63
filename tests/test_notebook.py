"""notebooks/experimentation.ipynb runs headless on a tiny sweep, so it cannot rot."""
import subprocess
import sys
from pathlib import Path

import pytest

import nbformat
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # a notebook kernel: make test runs it, pytest alone does not

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "experimentation.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


def test_notebook_executes_on_a_sweep(data_root, tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [sys.executable, "-m", "snn_sweep", "-m", "model=ann,snn", "encoder=rate,direct",
         "seed=0,1", f"data.root={data_root}", "data.download=false", "data.val_size=100",
         "data.train_subset=200", "timesteps=3", "model.hidden=[32]", "trainer.progress=false",
         "trainer.threads=1", f"hydra.sweep.dir={sweep}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("SNN_SWEEP_DIRS", str(sweep))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "8 runs" in text  # 4 ANN jobs (2 of them duplicates) + 4 SNN jobs
    assert "duplicate" in text and "versus" in text
    assert sum(o.get("output_type") == "display_data" for c in nb.cells
               for o in c.get("outputs", [])) >= 3  # the three figures
