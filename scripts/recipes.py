"""Write each model's recipe (snn_sweep/conf/recipe/<name>.yaml) from the best trial of its tuning studies.

    python scripts/recipes.py multirun/results/recipes [NAME ...]

reads the studies recipe_<NAME>_seed<S>, one per sampler seed S, from DIR/<NAME>_seed<S>.db
(what `make tune-recipes` leaves) and sets the recipe's values to the parameters of the best
trial of them all: config keys (optimizer.lr ...) in place, a group choice (encoder, augment)
in the recipe's defaults list. The rest of the recipe (its epochs, the model) stays as
written. The test set plays no part: studies maximize validation accuracy.
"""
import sys
from pathlib import Path

import optuna
from omegaconf import OmegaConf

RECIPES = Path(__file__).resolve().parents[1] / "snn_sweep" / "conf" / "recipe"
GROUPS = ("encoder", "neuron", "optimizer", "scheduler", "augment")


def update(name: str, params: dict, source: str) -> Path:
    path = RECIPES / f"{name}.yaml"
    lines = path.read_text().splitlines()
    header = lines[:next(i for i, ln in enumerate(lines) if not ln.startswith("#"))]
    # the header's last paragraph, from "# Provisional" or "# Tuned:", is the note this replaces
    header = header[:next((i for i, ln in enumerate(header)
                           if ln.startswith(("# Provisional", "# Tuned:"))), len(header))]
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
        dbs = sorted(where.glob(f"{name}_seed*.db"))
        if not dbs:
            sys.exit(f"error: {where / (name + '_seed*.db')}: no such study file (run make "
                     f"tune-recipes first)")
        studies = [optuna.load_study(study_name=f"recipe_{db.stem}", storage=f"sqlite:///{db}")
                   for db in dbs]
        study = max(studies, key=lambda s: s.best_value)
        best = study.best_trial
        others = ", ".join(f"{s.study_name} {s.best_value:.4f}" for s in studies if s is not study)
        source = f"study {study.study_name} (make tune-recipes), trial {best.number}, " \
            f"val_acc {best.value:.4f}" + (f" (best of the other seed: {others})" if others else "")
        print(f"{update(name, best.params, source)}: {best.params}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
