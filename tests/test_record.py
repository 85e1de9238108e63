"""The run record: identity apart from where a run ran, runs of the first record version still found,
and a run dir that rebuilds its model without .hydra/."""
import json
import shutil
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONF_DIR, make_dataset, run_cli
from snn_sweep.build import model_spec, resolve
from snn_sweep.record import CONTEXT, IDENTITY, config_sha, identity

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_sweep"
# The command that made tests/fixtures/legacy_sweep with the code of main before identity
# version 2 (commit 22069c6), from a folder holding the tiny data set in fixdata/.
LEGACY = ["-m", "model=ann,snn,csnn_bn", "data.root=fixdata", "data.download=false",
          "data.val_size=100", "data.batch_size=50", "data.eval_batch_size=100", "timesteps=4",
          "trainer.progress=false", "trainer.threads=1", "model.hidden=[16]"]


def test_every_config_key_is_identity_or_context():
    """A key added to the schema must say whether it changes what is trained."""
    with initialize_config_dir(config_dir=CONF_DIR):
        cfg = OmegaConf.to_container(compose("config"))
    leaves = {f"{top}.{k}" for top in ("data", "trainer") for k in cfg[top]}
    keys = {k for k in cfg if k not in ("data", "trainer")} | leaves
    assert not set(IDENTITY) & set(CONTEXT)
    assert keys == set(IDENTITY) | set(CONTEXT), keys ^ (set(IDENTITY) | set(CONTEXT))


def test_identity_leaves_out_where_and_how_a_run_ran(make_cfg):
    base = config_sha(resolve(make_cfg()))
    for elsewhere in ("data.root=/elsewhere", "data.download=true", "trainer.threads=2",
                      "trainer.device=cpu", "data.eval_batch_size=7", "trainer.progress=true",
                      "trainer.checkpoint=false", "trainer.compile=true", "data.cache=/x"):
        assert config_sha(resolve(make_cfg(elsewhere))) == base, elsewhere
    for trained in ("seed=1", "timesteps=5", "neuron.beta=0.9", "optimizer.lr=0.01",
                    "data.train_subset=200", "trainer.epochs=2", "augment=affine",
                    "trainer.precision=bf16", "data.val_size=50"):
        assert config_sha(resolve(make_cfg(trained))) != base, trained


def test_frame_settings_are_what_is_trained_and_an_anns_timesteps_cut_its_frames(make_cfg):
    events = ("dataset=nmnist", "encoder=frames", "model=csnn", "model.channels=[4,8]")
    base = config_sha(resolve(make_cfg(*events)))
    for trained in ("data.frames.time_window=1000", "data.frames.polarity=false",
                    "data.frames.denoise=5000", "timesteps=5"):
        changed = make_cfg(*events, trained)
        if "polarity" in trained:
            changed.data.shape[0] = 1
        assert config_sha(resolve(changed)) != base, trained
    ann = [e for e in events if not e.startswith("model")] + ["model=ann"]
    assert config_sha(resolve(make_cfg(*ann))) != config_sha(resolve(make_cfg(*ann, "timesteps=5")))


def test_an_anns_identity_ignores_encoder_neuron_and_timesteps(make_cfg):
    ann = identity(resolve(make_cfg("model=ann")))
    assert ann["encoder"] is ann["neuron"] is ann["timesteps"] is None
    assert config_sha(resolve(make_cfg("model=ann", "encoder=latency", "timesteps=9"))) == \
        config_sha(resolve(make_cfg("model=ann")))


def _job(tmp: Path, data: Path, *extra: str):
    return run_cli("-m", "model=snn", f"data.root={data}", "data.download=false",
                   "data.val_size=100", "data.batch_size=50", "timesteps=4",
                   "model.hidden=[16]", "trainer.progress=false",
                   f"hydra.sweep.dir={tmp / 'sweep'}", *extra, cwd=tmp)


def test_a_sweep_relaunched_with_its_data_elsewhere_or_other_threads_trains_nothing(tmp_path):
    first = make_dataset(tmp_path / "data_a")
    moved = tmp_path / "mounted" / "data_b"
    shutil.copytree(first, moved)
    assert _job(tmp_path, first, "trainer.threads=1").returncode == 0
    result = tmp_path / "sweep" / "0" / "result.json"
    before = result.read_bytes()
    done = json.loads(before)
    assert done["identity_version"] == 2 and done["context"]["data_root"] == str(first)
    assert done["choices"]["model"] == "snn" and done["swept"]["timesteps"] == 4
    again = _job(tmp_path, moved, "trainer.threads=2")
    assert again.returncode == 0, again.stderr
    assert "already holds a completed run of this config: not training it again" in \
        again.stdout + again.stderr
    assert result.read_bytes() == before


def test_a_sweep_made_before_identity_version_2_relaunched_trains_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(FIXTURE, sweep)
    make_dataset(tmp_path / "fixdata")
    before = {p: p.read_bytes() for p in sweep.glob("*/result.json")}
    out = run_cli(*LEGACY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (out.stdout + out.stderr).count("not training it again") == 3
    assert {p: p.read_bytes() for p in sweep.glob("*/result.json")} == before
    assert not list(sweep.glob("*/checkpoint.pt"))  # nothing was trained
    changed = run_cli(*LEGACY, "seed=1", f"hydra.sweep.dir={tmp_path / 'other'}", cwd=tmp_path)
    assert changed.returncode == 0 and "not training it again" not in changed.stdout + \
        changed.stderr


def test_a_run_dir_rebuilds_its_model_without_hydra_files(make_cfg, tmp_path):
    import snn_sweep
    from snn_sweep.train import train
    cfg = make_cfg("model=csnn_bn", "neuron.learn_beta=true")
    train(cfg, str(tmp_path))
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["format"] == 2 and saved["model"] == model_spec(resolve(cfg))
    run = snn_sweep.load_run(str(tmp_path))  # the run dir has no .hydra/ at all
    assert not (tmp_path / ".hydra").exists()
    assert run.record["status"] == "completed" and run.cfg.timesteps == 4
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][name]), name
    x = torch.rand(4, 3, 1, 28, 28)
    torch.testing.assert_close(run.model(x)[1], run.model(x)[1])
    assert not run.model.training


# config_sha of configs as identity version 2 hashed them when it began (commit 4d6c16a): a key
# added to the schema since must leave them as they were (record.ADDED_AT_DEFAULT), or every
# completed run of a relaunched sweep would be trained again.
VERSION_2_SHAS = {("model=snn", "model.hidden=[16]"): "43dda6fcb846aaad",
                  ("model=ann", "model.hidden=[16]"): "5ab3260eb95cb8ef",
                  ("model=snn_single_step", "encoder=direct"): "435964470f635972",
                  ("model=csnn_bn", "model.channels=[4,8]"): "45260afd027bafa0",
                  ("recipe=snn_rate",): "9ab0e3aba1555e48",
                  ("model=snn", "neuron=synaptic"): "472d42c2cd054bdd"}


def test_keys_added_since_version_2_leave_its_hashes_as_they_were():
    base = ["data.val_size=100", "data.batch_size=50", "timesteps=4", "trainer.threads=1"]
    for extra, expected in VERSION_2_SHAS.items():
        with initialize_config_dir(config_dir=CONF_DIR):
            cfg = resolve(compose("config", overrides=base + list(extra)))
        assert config_sha(cfg) == expected, extra
