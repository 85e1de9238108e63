"""scripts/recipes.py writes a study's best trial into a recipe that Hydra composes."""
import importlib.util
import shutil
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir

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
