"""Write each model's recipe (snn_sweep/conf/recipe/<name>.yaml) from the best trial of its tuning study.

    python scripts/recipes.py multirun/results/recipes [NAME ...]

reads the study recipe_<NAME> from DIR/<NAME>.db (what `make tune-recipes` leaves) and sets the
recipe's values to the best trial's parameters: config keys (optimizer.lr ...) in place, a
group choice (encoder) in the recipe's defaults list. The rest of the recipe (its epochs, the
model) stays as written. The test set plays no part: studies maximize validation accuracy.
"""
import sys
from pathlib import Path

import optuna
from omegaconf import OmegaConf

RECIPES = Path(__file__).resolve().parents[1] / "snn_sweep" / "conf" / "recipe"
GROUPS = ("encoder", "neuron", "optimizer", "scheduler")


def update(name: str, params: dict, source: str) -> Path:
    path = RECIPES / f"{name}.yaml"
    lines = path.read_text().splitlines()
    header = [ln for ln in lines[:next(i for i, ln in enumerate(lines) if not ln.startswith("#"))]
              if not ln.startswith(("# Provisional", "# has not been run", "# Tuned:"))]
    recipe = OmegaConf.load(path)
    for key, value in params.items():
        if key in GROUPS:
            recipe.defaults = [{**d, f"override /{key}": value} if f"override /{key}" in d else d
                               for d in recipe.defaults]
            if not any(f"override /{key}" in d for d in recipe.defaults):
                recipe.defaults.append({f"override /{key}": value})
        else:
            OmegaConf.update(recipe, key, value, force_add=True)
    text = "\n".join(header + [f"# Tuned: the best trial of {source}."]) + "\n"
    path.write_text(text + OmegaConf.to_yaml(recipe))
    return path


def main(argv) -> int:
    if not argv:
        sys.exit(__doc__.split("\n\n")[1].strip())
    where, names = Path(argv[0]), argv[1:] or [p.stem for p in sorted(RECIPES.glob("*.yaml"))]
    for name in names:
        db = where / f"{name}.db"
        if not db.is_file():
            sys.exit(f"error: {db}: no such study file (run make tune-recipes first)")
        study = optuna.load_study(study_name=f"recipe_{name}", storage=f"sqlite:///{db}")
        best = study.best_trial
        source = f"study recipe_{name} (make tune-recipes), trial {best.number}, " \
            f"val_acc {best.value:.4f}"
        print(f"{update(name, best.params, source)}: {best.params}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
