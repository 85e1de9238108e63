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
         "neuron.beta=0.5,0.9", "seed=0,1", f"data.root={data_root}", "data.download=false", "data.val_size=100",
         "data.train_subset=200", "timesteps=3", "model.hidden=[32]", "trainer.progress=false",
         "trainer.threads=1", f"hydra.sweep.dir={sweep}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # the figures' legends, read back after the notebook's own cells
    nb.cells.append(nbformat.v4.new_code_cell(
        "print('LEGEND', fig_timesteps.axes[0].get_legend_handles_labels()[1])"))
    monkeypatch.setenv("SNN_SWEEP_DIRS", str(sweep))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "16 runs" in text  # 8 ANN jobs (6 of them duplicates: no encoder, no neuron) + 8 SNN
    assert "duplicate" in text and "versus" in text
    assert sum("image/png" in o.get("data", {}) for c in nb.cells
               for o in c.get("outputs", [])) == 3  # the three figures
    # a line per encoder and beta, not one per encoder averaging both betas
    legend = next(line for line in text.splitlines() if line.startswith("LEGEND"))
    assert sorted(eval(legend[len("LEGEND"):])) == [
        f"encoder={e}, beta={b}" for e in ("direct", "rate") for b in (0.5, 0.9)]


def test_versus_ann_cell_says_why_it_is_empty():
    """The "against its ANN" cell on runs without an ANN twin (a user's own spiking models)
    says why there is nothing to compare instead of showing an empty frame."""
    import contextlib
    import io
    import types

    import pandas as pd

    from snn_sweep import aggregate
    nb = nbformat.read(NOTEBOOK, as_version=4)
    [cell] = [c for c in nb.cells if c.cell_type == "code" and "versus_ann" in c.source]
    results = pd.DataFrame({"status": ["completed"] * 2, "spiking": [True, True],
                            "arch": ["mynet.Net()", "mynet.FastNet()"],
                            "model": ["tut6", "fast_tut6"], "test_acc": [0.9, 0.91]})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(cell.source, {"aggregate": aggregate, "results": results,
                           "runs": types.SimpleNamespace(keys=["model"])})
    assert "no completed ANN run in these runs" in out.getvalue()
