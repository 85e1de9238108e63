"""Every option of every group composes and trains; the schema rejects typos and wrong types."""
import json
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from conftest import EVENTS
from snn_sweep.train import train

CONF = Path(__file__).resolve().parents[1] / "snn_sweep" / "conf"
OPTIONS = [(group, p.stem) for group in ("model", "encoder", "neuron", "optimizer", "scheduler",
                                         "dataset")
           for p in sorted((CONF / group).glob("*.yaml"))]
SURROGATES = sorted(p.stem for p in (CONF / "neuron" / "surrogate").glob("*.yaml"))


def stems(group: str) -> set:
    return {p.stem for p in (CONF / group).glob("*.yaml")}


def test_docs_list_every_option():
    """The docs' config reference lists every option of every group, the surrogates too."""
    reference = (CONF.parents[1] / "docs" / "configuration.md").read_text()
    for group, option in OPTIONS + [("neuron/surrogate", s) for s in SURROGATES]:
        assert f"`{option}`" in reference, f"docs/configuration.md does not list {group}={option}"


@pytest.mark.parametrize("surrogate", SURROGATES)
def test_surrogate_option_is_every_neurons_spike_grad(make_cfg, surrogate):
    """neuron/surrogate=X gives each layer's neuron snntorch.surrogate.X, any neuron option."""
    from snn_sweep.build import build_model, resolve
    for neuron in ("leaky", "synaptic"):
        cfg = resolve(make_cfg(f"neuron={neuron}", f"neuron/surrogate={surrogate}"))
        assert cfg.neuron.spike_grad == {"_target_": f"snntorch.surrogate.{surrogate}"}
        grads = [m.spike_grad for m in build_model(cfg).modules() if hasattr(m, "spike_grad")]
        assert len(grads) == 2 and all(g.__module__ == "snntorch.surrogate" and
                                       g.__qualname__.split(".")[0] == surrogate for g in grads)


def test_surrogate_arguments_go_beside_its_target(make_cfg):
    import inspect

    from snn_sweep.build import build_model, resolve
    cfg = resolve(make_cfg("neuron/surrogate=fast_sigmoid", "+neuron.spike_grad.slope=10"))
    grads = [m.spike_grad for m in build_model(cfg).modules() if hasattr(m, "spike_grad")]
    assert [inspect.getclosurevars(g).nonlocals for g in grads] == [{"slope": 10}] * 2


def schema_defaults(node) -> dict:
    """The defaults a schema dataclass gives (MISSING ones left out), nested as dicts."""
    import dataclasses
    from omegaconf import MISSING
    out = {}
    for f in dataclasses.fields(node):
        if f.default is not dataclasses.MISSING and f.default is not MISSING:
            out[f.name] = getattr(f.default, "value", f.default)
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            out[f.name] = schema_defaults(type(value)) if dataclasses.is_dataclass(value) \
                else value
    return out


def repeated(values: dict, defaults: dict, prefix: str = "") -> list:
    found = []
    for key, value in values.items():
        if key in ("defaults", "hydra") or key not in defaults:
            continue
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            found += repeated(value, defaults[key], f"{prefix}{key}.")
        elif value == defaults[key]:
            found.append(f"{prefix}{key}")
    return found


def test_no_yaml_repeats_a_schema_default():
    """Defaults live in the schema (snn_sweep/config.py) only: a YAML that writes a schema
    default again would silently win over it once the schema changes."""
    from omegaconf import OmegaConf
    from snn_sweep import config
    stored = {("model", "settings"): config.ModelSettings, ("model", "mlp"): config.MLPConfig,
              ("model", "conv"): config.ConvConfig, ("encoder", "encoder"): config.EncoderConfig,
              ("encoder", "rate"): config.RateEncoderConfig,
              ("encoder", "latency"): config.LatencyEncoderConfig,
              ("encoder", "delta"): config.DeltaEncoderConfig,
              ("neuron", "neuron"): config.NeuronConfig,
              ("neuron", "synaptic"): config.SynapticNeuronConfig}
    checked, found = 0, []
    files = [(CONF / "config.yaml", config.Config)]
    files += [(p, config.DataConfig) for p in (CONF / "dataset").glob("*.yaml")]
    for group in ("model", "encoder", "neuron"):
        for p in (CONF / group).glob("*.yaml"):
            schema = [d for d in OmegaConf.load(p).defaults
                      if isinstance(d, dict) or OmegaConf.is_dict(d)][0]
            [(key, name)] = dict(schema).items()
            files.append((p, stored[(group, name)]))
    for path, node in files:
        values = OmegaConf.to_container(OmegaConf.load(path))
        found += [f"{path.relative_to(CONF)}: {k}" for k in repeated(values, schema_defaults(node))]
        checked += 1
    assert checked > 10 and not found, found


@pytest.mark.parametrize("group,option", OPTIONS)
def test_option_composes_and_trains(make_cfg, event_root, tmp_path, group, option):
    extra = []
    if (group, option) == ("encoder", "frames"):
        extra = ["dataset=nmnist", *EVENTS["nmnist"]]
    if option in EVENTS:
        extra = ["encoder=frames", *EVENTS[option]]
    if extra:
        extra += [f"data.root={event_root}", f"data.cache={tmp_path / 'cache'}"]
    cfg = make_cfg(f"{group}={option}", "data.train_subset=100", *extra)
    if group == "scheduler":
        assert cfg.scheduler._target_.startswith("torch.optim.lr_scheduler.")
    elif group == "neuron":  # named by the entrypoint after the group choice, here by its class
        assert cfg.neuron._target_.lower() == f"snntorch.{option}"
    else:
        assert cfg[group if group != "dataset" else "data"].name == option
    obj = train(cfg, str(tmp_path))
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["status"] == "completed"
    if group == "neuron":
        assert res["neuron"] == option
    assert 0.0 <= obj <= 1.0 and obj == res["val_acc"]


@pytest.mark.parametrize("encoder", ["rate", "latency", "delta", "direct"])
@pytest.mark.parametrize("neuron", ["synaptic", "alpha"])
def test_conv_snn_with_every_encoder_and_second_order_neurons(make_cfg, tmp_path, encoder, neuron):
    cfg = make_cfg("model=csnn", f"encoder={encoder}", f"neuron={neuron}", "data.train_subset=50")
    train(cfg, str(tmp_path))
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("readout", ["membrane_ce", "rate_ce", "count_mse"])
@pytest.mark.parametrize("extra", [[], ["neuron.reset_mechanism=zero", "neuron.learn_beta=true",
                                        "neuron.learn_threshold=true", "neuron/surrogate=sigmoid",
                                        "scheduler=cosine"]])
def test_readouts_and_neuron_options(make_cfg, tmp_path, readout, extra):
    cfg = make_cfg(f"model.readout={readout}", "data.train_subset=100", *extra)
    train(cfg, str(tmp_path))
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["readout"] == readout and res["status"] == "completed"


def test_single_step_model_runs_one_step_whatever_timesteps_says(make_cfg, tmp_path):
    cfg = make_cfg("model=snn_single_step", "encoder=direct", "timesteps=10",
                   "data.train_subset=100")
    train(cfg, str(tmp_path))
    assert json.loads((tmp_path / "result.json").read_text())["timesteps"] == 1


@pytest.mark.parametrize("overrides,message", [
    (["neuron.betta=0.5"], "Key 'betta' not in 'NeuronConfig'"),  # misspelt key
    (["encoder=latency", "encoder.gain=2"], "Key 'gain' not in 'LatencyEncoderConfig'"),
    (["timesteps=ten"], "could not be converted to Integer"),  # wrong type
    (["trainer.epochs=1.5"], "could not be converted to Integer"),
    (["model.readout=spikes"], "Invalid value 'spikes', expected one of"),  # not a Readout
    (["trainer.precision=fp16"], "Invalid value 'fp16', expected one of [fp32, bf16]"),
])
def test_schema_rejects_at_composition(make_cfg, overrides, message):
    with pytest.raises(ConfigCompositionException) as info:
        make_cfg(*overrides)
    assert message in str(info.value.__cause__)


def test_unknown_option_lists_the_real_options(make_cfg):
    with pytest.raises(Exception) as info:
        make_cfg("model=transformer")
    text = str(info.value)
    assert "model/transformer" in text and "snn_single_step" in text
    listed = text.split("Available options in 'model':")[1].split("Config search path")[0]
    assert set(listed.split()) == stems("model")


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_experiment_presets_compose(make_cfg, preset):
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(CONF)):
        cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params, "an experiment preset defines the sweep it runs"
    for key, values in params.items():  # every swept value is a valid override
        for v in str(values).split(","):
            make_cfg(f"{key}={v}")


def test_augment_stage_runs_are_the_comparisons_seed_0():
    """make comparison copies (trainer.reuse) the augmentation stage's runs of each recipe's
    chosen option: that holds only if they have the comparison's seed-0 config_sha."""
    from hydra import compose, initialize_config_dir

    from snn_sweep.record import config_sha

    def composed(*overrides, sweep=False):
        with initialize_config_dir(config_dir=str(CONF)):
            return compose("config", overrides=list(overrides), return_hydra_config=sweep)

    stage = composed("experiment=augment_budget", sweep=True).hydra.sweeper.params
    compared = composed("experiment=comparison", sweep=True).hydra.sweeper.params
    assert set(stage.recipe.split(",")) <= set(compared.recipe.split(","))
    for recipe in stage.recipe.split(","):
        chosen = composed("experiment=comparison", f"recipe={recipe}", "seed=0")
        option = chosen.augment.name
        assert option in stage.augment.split(","), recipe
        staged = composed("experiment=augment_budget", f"recipe={recipe}", f"augment={option}",
                          "seed=0")
        assert config_sha(staged) == config_sha(chosen), recipe


def leaves(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@pytest.mark.parametrize("group", ["experiment", "hparams_search"])
def test_presets_override_the_defaults(group):
    """A preset's values win over config.yaml's (e.g. snn_vs_ann's trainer.epochs=3)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    checked = 0
    for path in sorted((CONF / group).glob("*.yaml")):
        preset = OmegaConf.to_container(OmegaConf.load(path))
        preset.pop("defaults", None)
        preset.pop("hydra", None)
        with initialize_config_dir(config_dir=str(CONF)):
            cfg = compose("config", overrides=[f"{group}={path.stem}"])
        for key, value in leaves(preset):
            got = OmegaConf.select(cfg, key)
            assert getattr(got, "value", got) == value, f"{path.name}: {key}"  # enums by value
            checked += 1
    assert checked


def test_built_in_ranges_bind_only_the_built_in_models(make_cfg):
    """A user's model may have arguments named like the built-ins' (an int `hidden`, three
    `channels`, a 7x7 kernel): validate() leaves them to the user's constructor, and still
    holds the built-in models to their ranges."""
    from omegaconf import OmegaConf, open_dict

    from snn_sweep.errors import InputError
    from snn_sweep.validate import validate
    cfg = make_cfg("model=cnn")
    with open_dict(cfg):
        user = OmegaConf.create({"_target_": "mynet.Net", "hidden": 128, "channels": [8, 16, 32],
                                 "kernel_size": 7, "padding": 3, "dropout": 0.2})
        cfg.model = user
    validate(cfg)
    for key, value in (("hidden", []), ("channels", [8, 16, 32]), ("kernel_size", 7)):
        built_in = make_cfg("model=snn" if key == "hidden" else "model=cnn")
        with open_dict(built_in):
            built_in.model[key] = value
        with pytest.raises(InputError, match=f"model.{key}="):
            validate(built_in)
    conv = make_cfg("model=cnn", "model.hidden=[]")  # a conv net's hidden layers are optional
    validate(conv)
    with open_dict(conv):
        conv.model.hidden = [0]
    with pytest.raises(InputError, match=r"model.hidden=\[0\] is not allowed: a list of integers >= 1"):
        validate(conv)
