"""scripts/recipes.py writes a study's best trial into a recipe that Hydra composes."""
import importlib.util
import shutil
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("recipes", ROOT / "scripts" / "recipes.py")
recipes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipes)


def test_best_trial_becomes_the_recipe(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "snn_sweep" / "conf", conf)
    monkeypatch.setattr(recipes, "RECIPES", conf / "recipe")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dist = {"optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
            "encoder": optuna.distributions.CategoricalDistribution(["direct", "rate"]),
            "augment": optuna.distributions.CategoricalDistribution(["none", "affine"]),
            "timesteps": optuna.distributions.IntDistribution(4, 16),
            "model.dropout": optuna.distributions.CategoricalDistribution([0.0, 0.2, 0.5])}
    # two sampler seeds, one study each: the best trial of both becomes the recipe
    for seed, trials in ((0, ((0.97, {"optimizer.lr": 1e-3, "encoder": "direct", "timesteps": 8,
                                      "model.dropout": 0.0, "augment": "none"}),
                              (0.98, {"optimizer.lr": 3e-3, "encoder": "rate", "timesteps": 12,
                                      "model.dropout": 0.2, "augment": "affine"}))),
                         (1, ((0.975, {"optimizer.lr": 2e-3, "encoder": "direct", "timesteps": 6,
                                       "model.dropout": 0.5, "augment": "none"}),))):
        study = optuna.create_study(study_name=f"recipe_csnn_seed{seed}", direction="maximize",
                                    storage=f"sqlite:///{tmp_path / f'csnn_seed{seed}.db'}")
        for value, params in trials:
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dist,
                                                      value=value))
    path = conf / "recipe" / "csnn.yaml"  # an earlier note, over two lines, is replaced
    head, body = path.read_text().split("\ndefaults:", 1)
    path.write_text(f"{head}\n# Provisional: a starting point;\n# make tune-recipes replaces "
                    f"it.\ndefaults:{body}")
    assert recipes.main([str(tmp_path), "csnn"]) == 0
    text = path.read_text()
    assert text.startswith("# @package _global_\n")
    assert "Provisional" not in text and "replaces it" not in text
    assert text.count("# Tuned:") == 1
    assert "study recipe_csnn_seed0 (make tune-recipes), trial 1, val_acc 0.9800 (best of the " \
        "other seed: recipe_csnn_seed1 0.9750)" in text
    with initialize_config_dir(config_dir=str(conf)):
        cfg = compose("config", overrides=["recipe=csnn"])
    assert (cfg.model.name, cfg.encoder.name, cfg.timesteps) == ("csnn", "rate", 12)
    assert cfg.optimizer.lr == 3e-3 and cfg.augment.name == "affine"
    assert cfg.model.dropout == 0.2 and cfg.model.channels == [12, 64]


def test_missing_study_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="no such study file"):
        recipes.main([str(tmp_path), "ann"])


def test_tuning_budget_overrides_the_recipe():
    """hparams_search=recipe tunes every recipe with the same budget and search space."""
    with initialize_config_dir(config_dir=str(ROOT / "snn_sweep" / "conf")):
        spaces = []
        for recipe in ("ann", "csnn_bn"):
            cfg = compose("config", overrides=[f"recipe={recipe}", "hparams_search=recipe"],
                          return_hydra_config=True)
            tuned = compose("config", overrides=[f"recipe={recipe}"])
            assert cfg.trainer.epochs < tuned.trainer.epochs
            assert cfg.data.train_subset is not None and tuned.data.train_subset is None
            assert cfg.hydra.sweeper.n_trials > cfg.hydra.sweeper.sampler.n_startup_trials
            spaces.append(dict(cfg.hydra.sweeper.params))
        assert spaces[0] == spaces[1]
        assert {"model.dropout", "augment", "optimizer.weight_decay"} <= set(spaces[0])


def _budget_csv(path, rows):
    """A results.csv as the aggregator writes it for experiment=augment_budget."""
    import pandas as pd
    pd.DataFrame(rows, columns=["job_dir", "status", "recipe", "augment", "seed", "val_acc",
                                "test_acc"]).to_csv(path, index=False)
    return path


def test_budget_stage_writes_the_best_validation_option(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "snn_sweep" / "conf", conf)
    monkeypatch.setattr(recipes, "RECIPES", conf / "recipe")
    tuned = (conf / "recipe" / "cnn_bn.yaml").read_text()
    # the best test accuracy (affine) must not count; a failed run's score must not either
    csv = _budget_csv(tmp_path / "results.csv", [
        ("0", "completed", "cnn_bn", "none", 0, 0.9930, 0.9990),
        ("1", "completed", "cnn_bn", "affine_mild", 0, 0.9942, 0.9900),
        ("2", "completed", "cnn_bn", "affine", 0, 0.9914, 0.9999),
        ("3", "failed", "cnn_bn", "affine", 1, 0.9999, 0.9999),
        ("4", "completed", "ann", "none", 0, 0.9800, 0.98),
        ("5", "completed", "ann", "affine_mild", 0, 0.9800, 0.99)])  # a tie: the cheaper none
    assert recipes.main(["--augment", str(csv)]) == 0
    text = (conf / "recipe" / "cnn_bn.yaml").read_text()
    tuned_note = next(ln for ln in tuned.splitlines() if ln.startswith("# Tuned:"))
    assert tuned_note in text  # the studies' note stays; the augmentation's follows it
    assert "# Augmentation: affine_mild, the best validation accuracy of experiment=" \
        "augment_budget (make augment-budget, 1 seed): affine_mild 0.9942, none 0.9930, " \
        "affine 0.9914" in text
    # run again on other runs: the note is replaced, not added
    csv = _budget_csv(tmp_path / "results.csv", [
        ("0", "completed", "cnn_bn", "none", 0, 0.9950, 0.99),
        ("1", "completed", "cnn_bn", "affine_mild", 0, 0.9942, 0.99)])
    recipes.main(["--augment", str(csv)])
    text = (conf / "recipe" / "cnn_bn.yaml").read_text()
    assert text.count("# Augmentation:") == 1 and "none 0.9950, affine_mild 0.9942" in text
    with initialize_config_dir(config_dir=str(conf)):
        cnn_bn = compose("config", overrides=["recipe=cnn_bn"])
        ann = compose("config", overrides=["recipe=ann"])
    assert cnn_bn.augment is None and ann.augment is None
    assert cnn_bn.optimizer.lr == OmegaConf.load(ROOT / "snn_sweep" / "conf" / "recipe" /
                                                  "cnn_bn.yaml").optimizer.lr


@pytest.mark.parametrize("content, message", [
    (None, "cannot read it"),
    ("recipe,augment,status\ncnn_bn,none,completed\n", "no column val_acc"),
    ("recipe,augment,status,val_acc\ncnn_bn,none,failed,0.9\n", "no completed run")])
def test_budget_stage_bad_input_is_one_line(tmp_path, content, message):
    csv = tmp_path / "results.csv"
    if content is not None:
        csv.write_text(content)
    with pytest.raises(SystemExit, match=message) as err:
        recipes.main(["--augment", str(csv)])
    assert str(csv) in str(err.value) and "\n" not in str(err.value)
