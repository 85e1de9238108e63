"""The run-dir contract: metrics.csv, result.json, checkpoint.pt; determinism; failures."""
import csv
import json
import math

import pytest
import snntorch as snn
import torch

from snn_sweep import nn as fast
from snn_sweep.errors import InputError
from snn_sweep.build import build_model
from snn_sweep.errors import NonFiniteLossError
from snn_sweep.train import RunPruned, train

RESULT_KEYS = {"status", "objective", "val_acc", "val_loss", "test_acc", "test_loss", "epochs",
               "train_time_s", "train_samples_per_s", "eval_samples_per_s", "n_params",
               "model", "encoder", "neuron", "timesteps", "beta", "lr", "seed",
               "macs_per_sample", "ann_energy_pj_per_sample", "energy_pj_per_sample"}
SPIKING_KEYS = {"spikes_per_sample", "synops_per_sample"}


def run(make_cfg, tmp_path, *overrides):
    train(make_cfg(*overrides), str(tmp_path))
    res = json.loads((tmp_path / "result.json").read_text())
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return res, rows


def test_snn_run_dir_contract(make_cfg, tmp_path):
    res, rows = run(make_cfg, tmp_path, "trainer.epochs=2")
    assert RESULT_KEYS | SPIKING_KEYS <= set(res)
    assert res["status"] == "completed" and res["epochs"] == 2 and res["timesteps"] == 4
    assert res["model"] == "snn" and res["encoder"] == "rate" and res["beta"] == 0.95
    best = max(rows, key=lambda r: float(r["val_acc"]))  # the first of equals
    assert res["objective"] == res["val_acc"] == float(best["val_acc"])
    assert res["best_epoch"] == int(best["epoch"])
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s",
            "firing_rate_0", "firing_rate_1"} <= set(rows[0])
    for r in rows:
        assert 0 < float(r["firing_rate_0"]) < 1
    # 784-64-10 MLP: spikes counted per sample over 4 steps, energy from synops at 0.9 pJ
    assert res["n_params"] == 784 * 64 + 64 + 64 * 10 + 10
    assert res["macs_per_sample"] == 784 * 64 + 64 * 10
    assert res["energy_pj_per_sample"] == pytest.approx(res["synops_per_sample"] * 0.9)
    assert 0 < res["spikes_per_sample"] <= 4 * (64 + 10)
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temp files


def test_checkpoint_loads_with_weights_only(make_cfg, tmp_path):
    cfg = make_cfg()
    train(cfg, str(tmp_path))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    model = build_model(cfg)
    model.load_state_dict(state["state_dict"])


def test_ann_has_no_spiking_fields_and_mac_energy(make_cfg, tmp_path):
    res, rows = run(make_cfg, tmp_path, "model=ann")
    assert res["timesteps"] is None and res["encoder"] is None and res["beta"] is None
    assert "spikes_per_sample" not in res and "firing_rate_0" not in rows[0]
    # its energy is its measured effective MACs' (ReLU zeros skipped), dense_ops its MACs'
    assert res["energy_pj_per_sample"] == pytest.approx(res["effective_macs_per_sample"] * 4.6)
    assert 0 < res["effective_macs_per_sample"] < res["dense_ops_per_sample"]
    assert res["dense_ops_per_sample"] == res["macs_per_sample"]
    assert res["effective_acs_per_sample"] == 0 and "val_activation_sparsity" in rows[0]


def test_direct_coded_first_layer_counts_as_macs(make_cfg, tmp_path):
    res, _ = run(make_cfg, tmp_path, "encoder=direct")
    # the first layer multiplies the analog pixels at every step: MACs, the non-zero pixels'
    assert 0 < res["effective_macs_per_sample"] < 4 * 784 * 64
    assert res["energy_pj_per_sample"] == pytest.approx(
        res["effective_acs_per_sample"] * 0.9 + res["effective_macs_per_sample"] * 4.6)
    assert res["effective_acs_per_sample"] <= 4 * 64 * 10  # only hidden spikes are ACs


def test_same_seed_same_metrics(make_cfg, tmp_path):
    a, rows_a = run(make_cfg, tmp_path / "a", "seed=3", "trainer.epochs=2")
    b, rows_b = run(make_cfg, tmp_path / "b", "seed=3", "trainer.epochs=2")
    c, _ = run(make_cfg, tmp_path / "c", "seed=4", "trainer.epochs=2")
    keys = ["train_loss", "train_acc", "val_loss", "val_acc"]
    assert [[r[k] for k in keys] for r in rows_a] == [[r[k] for k in keys] for r in rows_b]
    assert (a["test_acc"], a["test_loss"]) == (b["test_acc"], b["test_loss"])
    assert a["test_loss"] != c["test_loss"]


@pytest.mark.parametrize("encoder", ["rate", "direct"])
def test_same_seed_same_metrics_on_two_threads(make_cfg, tmp_path, encoder):
    runs = [run(make_cfg, tmp_path / d, "seed=3", "trainer.epochs=2", "trainer.threads=2",
                f"encoder={encoder}") for d in "ab"]
    (a, rows_a), (b, rows_b) = runs
    keys = ["train_loss", "train_acc", "val_loss", "val_acc"]
    assert [[r[k] for k in keys] for r in rows_a] == [[r[k] for k in keys] for r in rows_b]
    assert (a["test_acc"], a["test_loss"]) == (b["test_acc"], b["test_loss"])
    assert a["context"]["threads"] == b["context"]["threads"] == 2


def test_learns_on_the_tiny_data(make_cfg, tmp_path):
    res, _ = run(make_cfg, tmp_path, "trainer.epochs=3", "optimizer.lr=2e-3")
    assert res["test_acc"] > 0.5  # chance is 0.1


def membrane(out):
    """A spiking model's output membrane, an ANN's logits."""
    return out[1] if isinstance(out, tuple) else out


@pytest.mark.parametrize("model", ["ann", "snn", "cnn", "csnn"])
def test_dropout_acts_only_while_training(make_cfg, model):
    """model.dropout drops hidden activations or spikes in training mode; evaluation is the
    model without it (same weights, same output)."""
    x = torch.rand(8, 1, 28, 28)
    if model in ("snn", "csnn"):
        x = (x.unsqueeze(0).expand(4, *x.shape) < 0.5).float()
    out = {}
    for p in (0.0, 0.5):
        cfg = make_cfg(f"model={model}", f"model.dropout={p}")
        torch.manual_seed(0)
        net = build_model(cfg)
        assert any(isinstance(m, (torch.nn.Dropout, fast.Dropout)) for m in net.modules()) == (p > 0)
        with torch.no_grad():
            out[p, "eval"] = membrane(net.eval()(x))
            out[p, "train"] = membrane(net.train()(x))
    torch.testing.assert_close(out[0.0, "eval"], out[0.5, "eval"])
    torch.testing.assert_close(out[0.0, "train"], out[0.0, "eval"])
    assert not torch.allclose(out[0.5, "train"], out[0.5, "eval"])


@pytest.mark.parametrize("model", ["snn", "ann", "csnn_bn"])
def test_learns_in_bf16_and_records_it(make_cfg, tmp_path, model):
    """trainer.precision=bf16 (autocast over the model) trains every kind of model, rate-coded
    spikes through the sparse input layer included, and result.json says so."""
    res, _ = run(make_cfg, tmp_path, f"model={model}", "trainer.precision=bf16",
                 "trainer.epochs=3", "optimizer.lr=2e-3")
    assert res["precision"] == "bf16" and res["test_acc"] > 0.5  # chance is 0.1


def test_learns_with_dropout(make_cfg, tmp_path):
    res, _ = run(make_cfg, tmp_path, "trainer.epochs=3", "optimizer.lr=2e-3", "model.dropout=0.3")
    assert res["test_acc"] > 0.5 and res["dropout"] == 0.3


def test_no_neurons_leak_between_runs(make_cfg, tmp_path):
    run(make_cfg, tmp_path / "a")
    run(make_cfg, tmp_path / "b")
    assert snn.SpikingNeuron.instances == []


def test_divergence_raises_and_records_failure(make_cfg, tmp_path, monkeypatch):
    import snn_sweep.runner as r
    monkeypatch.setattr(r, "readout_loss", lambda *a: torch.tensor(math.nan, requires_grad=True))
    with pytest.raises(NonFiniteLossError, match="training loss is nan at epoch 1, batch 1"):
        train(make_cfg(), str(tmp_path))
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["status"] == "failed" and "NonFiniteLossError" in res["error"]
    assert "objective" not in res


def test_repeats_train_each_seed_in_its_own_dir(make_cfg, tmp_path):
    obj = train(make_cfg("repeats=3", "seed=7"), str(tmp_path))
    job = json.loads((tmp_path / "result.json").read_text())
    seeds = [json.loads((tmp_path / f"seed_{s}" / "result.json").read_text()) for s in (7, 8, 9)]
    values = [r["val_acc"] for r in seeds]
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    assert [r["seed"] for r in seeds] == [7, 8, 9] and len(set(r["test_loss"] for r in seeds)) == 3
    assert job["status"] == "completed" and job["seeds"] == [7, 8, 9] and job["seed"] == 7
    assert obj == job["objective"] == pytest.approx(mean) == job["val_acc"]
    assert job["objective_std"] == pytest.approx(std) and job["objective_per_seed"] == values
    assert job["test_acc"] == pytest.approx(sum(r["test_acc"] for r in seeds) / 3)
    assert not {"seed_std", "lr_std", "threads_std"} & set(job)  # settings are not averaged
    for s in (7, 8, 9):
        assert (tmp_path / f"seed_{s}" / "metrics.csv").is_file()


def test_on_epoch_prunes_and_records_the_epoch(make_cfg, tmp_path):
    seen = []

    def on_epoch(step, row):
        seen.append((step, row["val_acc"]))
        return step == 2  # a pruner's verdict after the second epoch

    with pytest.raises(RunPruned, match="pruned after epoch 2"):
        train(make_cfg("trainer.epochs=4"), str(tmp_path), on_epoch=on_epoch)
    res, rows = json.loads((tmp_path / "result.json").read_text()), list(
        csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [s for s, _ in seen] == [1, 2] and len(rows) == 2
    assert res["status"] == "pruned" and res["pruned_epoch"] == res["epochs"] == 2
    assert res["val_acc"] == seen[-1][1] == res["objective"]
    assert "test_acc" not in res and not (tmp_path / "checkpoint.pt").exists()


def test_repeats_steps_count_epochs_over_seeds_and_a_pruned_job_says_which_seed(make_cfg,
                                                                                tmp_path):
    steps = []
    with pytest.raises(RunPruned):
        train(make_cfg("repeats=3", "trainer.epochs=2"), str(tmp_path),
              on_epoch=lambda step, row: steps.append(step) or step == 3)
    assert steps == [1, 2, 3]  # seed 0: steps 1-2, seed 1: step 3 (its first epoch)
    job = json.loads((tmp_path / "result.json").read_text())
    assert job["status"] == "pruned" and job["error"].startswith("seed 1: RunPruned")
    assert json.loads((tmp_path / "seed_1" / "result.json").read_text())["pruned_epoch"] == 1
    assert not (tmp_path / "seed_2").exists()


def test_a_run_killed_after_epoch_1_resumes_to_the_same_end(make_cfg, tmp_path):
    full, full_rows = run(make_cfg, tmp_path / "full", "trainer.epochs=3",
                          "scheduler=cosine")

    def killed(step, row):
        if step == 1:  # dies once epoch 1 and its resume.pt are written
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg("trainer.epochs=3", "scheduler=cosine"), str(cut),
              on_epoch=killed)
    assert (cut / "resume.pt").is_file()
    res, rows = run(make_cfg, cut, "trainer.epochs=3", "scheduler=cosine",
                    "trainer.resume=true")
    keys = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert [[r[k] for k in keys] for r in rows] == [[r[k] for k in keys] for r in full_rows]
    for key in ("val_acc", "val_loss", "test_acc", "test_loss"):
        assert res[key] == full[key], key
    assert not (cut / "resume.pt").exists()  # completed: nothing left to resume


def test_resume_refuses_another_configs_checkpoint(make_cfg, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg("trainer.epochs=2"), str(tmp_path),
              on_epoch=lambda step, row: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(InputError, match="belongs to a run of another config"):
        train(make_cfg("trainer.epochs=2", "optimizer.lr=0.01", "trainer.resume=true"),
              str(tmp_path))


def test_a_completed_run_of_the_same_config_is_not_trained_again(make_cfg, tmp_path):
    first = train(make_cfg(), str(tmp_path))
    stamp = (tmp_path / "metrics.csv").stat().st_mtime_ns
    assert train(make_cfg("trainer.progress=true"), str(tmp_path)) == first
    assert (tmp_path / "metrics.csv").stat().st_mtime_ns == stamp
    train(make_cfg("seed=1"), str(tmp_path))  # another config: trained
    assert (tmp_path / "metrics.csv").stat().st_mtime_ns != stamp


def test_trainer_reuse_copies_a_completed_run_of_the_same_config(make_cfg, tmp_path,
                                                                monkeypatch):
    """trainer.reuse: a completed run of the same config under the named dirs is copied into
    the run dir (result.json's metrics, metrics.csv, checkpoint.pt) and not trained; another
    config, or a run that did not complete, is trained."""
    import snn_sweep.train as train_module
    stage = tmp_path / "stage"
    train(make_cfg("seed=0"), str(stage / "0"))
    train(make_cfg("seed=1"), str(stage / "1"))
    (stage / "1" / "result.json").write_text(json.dumps(
        {**json.loads((stage / "1" / "result.json").read_text()), "status": "failed"}))
    first = json.loads((stage / "0" / "result.json").read_text())
    trained = []
    real = train_module.fit
    monkeypatch.setattr(train_module, "fit",
                        lambda cfg, *a: (trained.append(cfg.seed), real(cfg, *a)))
    reuse = f"trainer.reuse=[{stage}]"
    train(make_cfg("seed=0", reuse), str(tmp_path / "comparison" / "0"))
    copy = tmp_path / "comparison" / "0"
    res = json.loads((copy / "result.json").read_text())
    assert trained == [] and res["reused_from"] == str(stage / "0")
    assert {k: res[k] for k in ("status", "val_acc", "test_acc", "config_sha")} == \
        {k: first[k] for k in ("status", "val_acc", "test_acc", "config_sha")}
    for name in ("metrics.csv", "checkpoint.pt"):
        assert (copy / name).read_bytes() == (stage / "0" / name).read_bytes()
    assert not (copy / "resume.pt").exists()
    train(make_cfg("seed=1", reuse), str(tmp_path / "comparison" / "1"))  # that one failed
    train(make_cfg("seed=2", reuse), str(tmp_path / "comparison" / "2"))  # no such run
    assert trained == [1, 2]
    assert "reused_from" not in json.loads((tmp_path / "comparison" / "2" / "result.json")
                                           .read_text())


def test_trainer_reuse_must_name_existing_dirs(make_cfg, tmp_path):
    with pytest.raises(InputError, match=r"trainer.reuse='.*nowhere' is not allowed: a list of "
                                         r"existing sweep or run dirs"):
        train(make_cfg(f"trainer.reuse=[{tmp_path / 'nowhere'}]"), str(tmp_path / "run"))


def test_threads_stay_as_set_after_the_compiled_kernels_start(make_cfg, tmp_path):
    """Numba's OpenMP layer resets the process's thread count when it starts; trainer.threads
    must hold for the whole run, and result.json must say what ran."""
    cfg = make_cfg("trainer.threads=1", "encoder=rate")
    train(cfg, str(tmp_path))
    assert torch.get_num_threads() == 1
    assert json.loads((tmp_path / "result.json").read_text())["context"]["threads"] == 1


def test_arch_pairs_each_spiking_model_with_its_ann_twin(make_cfg):
    """result.json's arch, by which the aggregator finds a spiking model's ANN: the same for
    the twins (whatever their neuron, dropout or timesteps), different across layouts."""
    from snn_sweep.record import arch
    archs = {m: arch(make_cfg(f"model={m}", "model.dropout=0.2" if m in ("ann", "cnn_bn") else
                              "timesteps=3").model)
             for m in ("ann", "snn", "snn_single_step", "cnn", "csnn", "cnn_bn", "csnn_bn")}
    assert archs["ann"] == archs["snn"] == archs["snn_single_step"]
    assert archs["cnn"] == archs["csnn"] != archs["cnn_bn"] == archs["csnn_bn"]
    assert len(set(archs.values())) == 3
