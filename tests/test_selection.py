"""Selection by validation: a run's objective, val/test metrics and checkpoint are those of its
best validation epoch; early stopping; duplicate runs; the confidence interval of a gap."""
import copy
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from snn_sweep.runner import Runner
from snn_sweep.aggregate import mark_duplicates, versus_ann
from snn_sweep.train import train


def scripted_validation(monkeypatch, metric, values):
    """Runner.evaluate_spiking returns `values` in turn for the validation set (one per epoch;
    the call after the last epoch, the test set, is left as it is) and records the weights it
    sees."""
    seen = []
    real = Runner.evaluate_spiking

    def fake(self, xs, ys):
        loss, acc, rec = real(self, xs, ys)
        seen.append(copy.deepcopy(self.model.state_dict()))
        i = len(seen) - 1
        if i < len(values):
            if metric == "val_acc":
                acc = values[i]
            else:
                loss = values[i]
        return loss, acc, rec

    monkeypatch.setattr(Runner, "evaluate_spiking", fake)
    return seen


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("metric, values, best", [
    ("val_acc", [0.5, 0.8, 0.7], 2), ("val_loss", [0.9, 0.4, 0.6], 2),
    ("val_acc", [0.3, 0.2, 0.1], 1)])
def test_best_validation_epoch_is_selected(make_cfg, tmp_path, monkeypatch, metric, values, best):
    seen = scripted_validation(monkeypatch, metric, values)
    train(make_cfg("trainer.epochs=3", f"optimized_metric={metric}"), str(tmp_path))
    res = json.loads((tmp_path / "result.json").read_text())
    rows = pd.read_csv(tmp_path / "metrics.csv")
    assert list(rows[metric]) == values  # every epoch kept
    assert res["best_epoch"] == best and res["epochs"] == 3 and not res["stopped_early"]
    assert res["objective"] == res[metric] == values[best - 1]
    assert len(seen) == 4  # 3 validations, then the test set once
    assert same(seen[3], seen[best - 1])  # tested on the selected weights
    assert not same(seen[2], seen[best - 1]) or best == 3
    assert same(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["state_dict"],
                seen[best - 1])


def test_early_stopping(make_cfg, tmp_path, monkeypatch):
    seen = scripted_validation(monkeypatch, "val_acc", [0.5, 0.8, 0.7, 0.6])
    train(make_cfg("trainer.epochs=6", "trainer.early_stopping_patience=2"), str(tmp_path))
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["epochs"] == 4 and res["stopped_early"] and res["best_epoch"] == 2
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 4 and len(seen) == 5
    assert res["val_acc"] == 0.8


def test_patience_is_checked(make_cfg, capsys):
    from snn_sweep.errors import InputError
    with pytest.raises(InputError, match="trainer.early_stopping_patience"):
        train(make_cfg("trainer.early_stopping_patience=-1"), "unused")


@pytest.mark.slow
def test_grid_over_ignored_settings_trains_once(data_root, tmp_path):
    """An ANN swept over encoders: the second job finds the first one's result (same effective
    config) and does not train; the aggregator counts one run."""
    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [sys.executable, "-m", "snn_sweep", "-m", "model=ann", "encoder=rate,direct",
         f"data.root={data_root}", "data.download=false", "data.val_size=100",
         "data.train_subset=200", "trainer.progress=false", "trainer.threads=1",
         f"hydra.sweep.dir={sweep}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = (json.loads((sweep / str(i) / "result.json").read_text()) for i in (0, 1))
    assert first["status"] == "completed" and second["status"] == "duplicate"
    assert second["duplicate_of"] == str(sweep / "0") and second["test_acc"] == first["test_acc"]
    assert not (sweep / "1" / "metrics.csv").exists()
    agg = subprocess.run([sys.executable, "-m", "snn_sweep.aggregate", str(sweep)],
                         capture_output=True, text=True)
    assert agg.returncode == 0, agg.stderr
    assert "1 completed" in agg.stdout and "1 duplicate" in agg.stdout
    summary = pd.read_csv(sweep / "summary.csv")
    assert summary["test_acc_count"].sum() == 1


def test_aggregator_marks_identical_settings():
    df = pd.DataFrame({"job_dir": ["a", "b", "c", "d"],
                       "status": ["completed", "completed", "completed", "failed"],
                       "config_sha": ["x", "y", "x", "x"]})
    marked = mark_duplicates(df)
    assert list(marked["status"]) == ["completed", "completed", "duplicate", "failed"]
    assert marked.loc[2, "duplicate_of"] == "a" and pd.isna(marked.loc[1, "duplicate_of"])


def welch_by_hand(a, b, level=0.95):
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf((1 + level) / 2, dof) * np.sqrt(va + vb)
    diff = np.mean(a) - np.mean(b)
    return diff - half, diff + half


def test_versus_ann_confidence_interval():
    snn = [0.981, 0.984, 0.979, 0.983]
    ann = [0.985, 0.986, 0.984]
    cnn, csnn = [0.991, 0.992, 0.990], [0.993, 0.994, 0.9935]
    rows = [{"model": "snn", "arch": "mlp", "spiking": True, "test_acc": v} for v in snn]
    rows += [{"model": "ann", "arch": "mlp", "spiking": False, "test_acc": v} for v in ann]
    rows += [{"model": "cnn", "arch": "conv", "spiking": False, "test_acc": v} for v in cnn]
    rows += [{"model": "csnn", "arch": "conv", "spiking": True, "test_acc": v} for v in csnn]
    df = pd.DataFrame(rows).assign(status="completed", job_dir=[str(i) for i in range(13)])
    table = versus_ann(df, ["model"]).set_index("model")
    assert list(table.index) == ["csnn", "snn"]
    for model, a, b, versus in (("snn", snn, ann, "ann"), ("csnn", csnn, cnn, "cnn")):
        r = table.loc[model]
        low, high = welch_by_hand(a, b)
        assert r["versus"] == versus and r["runs"] == len(a) and r["versus_runs"] == len(b)
        assert r["difference"] == pytest.approx(np.mean(a) - np.mean(b))
        assert (r["ci95_low"], r["ci95_high"]) == pytest.approx((low, high))
    # snn: -0.0033, but its interval reaches past 0 (high +0.0001); csnn: +0.0020, wholly above
    assert not table.loc["snn", "beyond_seed_noise"]
    assert table.loc["csnn", "beyond_seed_noise"]


def test_versus_ann_pairs_the_settings_both_sides_vary():
    """Spiking and ANN runs with and without augmentation: each spiking group against the ANN
    runs with its augmentation, not all of them; a setting only one side has (the SNN's
    dropout) pairs nothing."""
    rows = [{"model": m, "arch": "mlp", "spiking": m == "snn", "augment": aug, "dropout": d,
             "test_acc": acc + 0.001 * seed}
            for m, d in (("snn", 0.2), ("ann", 0.0))
            for aug, acc in (("none", 0.97 if m == "snn" else 0.98),
                             ("affine", 0.96 if m == "snn" else 0.99))
            for seed in range(3)]
    df = pd.DataFrame(rows).assign(status="completed", job_dir=[str(i) for i in range(12)])
    table = versus_ann(df, ["model", "augment", "dropout"]).set_index("augment")
    assert table.loc["none", "versus_runs"] == 3 and table.loc["affine", "versus_runs"] == 3
    assert table.loc["none", "difference"] == pytest.approx(-0.01)
    assert table.loc["affine", "difference"] == pytest.approx(-0.03)
