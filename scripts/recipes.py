"""Write each model's recipe (snn_sweep/conf/recipe/<name>.yaml) from its tuning runs.

    python scripts/recipes.py multirun/results/recipes [NAME ...]
    python scripts/recipes.py --augment docs/results/augment_budget/results.csv

The first form reads the studies recipe_<NAME>_seed<S>, one per sampler seed S, from
DIR/<NAME>_seed<S>.db (what `make tune-recipes` leaves) and sets the recipe's values to the
parameters of the best trial of them all: config keys (optimizer.lr ...) in place, a group
choice (encoder, augment) in the recipe's defaults list. The second form reads the aggregator's
results.csv of experiment=augment_budget (each recipe trained at its own budget with each
augmentation option, what `make augment-budget` leaves) and sets each recipe's augmentation to
the option with the best mean validation accuracy (a tie goes to the cheaper `none`). The rest
of the recipe (its epochs, the model) stays as written. The test set plays no part: both
stages maximize validation accuracy.
"""
import sys
from pathlib import Path

import optuna
import pandas as pd
from omegaconf import OmegaConf

RECIPES = Path(__file__).resolve().parents[1] / "snn_sweep" / "conf" / "recipe"
GROUPS = ("encoder", "neuron", "optimizer", "scheduler", "augment")
TUNED = ("# Provisional", "# Tuned:")  # a study's note: retuning drops every note from here on
AUGMENT = "# Augmentation:"


def update(name: str, params: dict, note: str, replaces: tuple) -> Path:
    """Set PARAMS in recipe NAME; NOTE replaces its header from the first line in REPLACES."""
    path = RECIPES / f"{name}.yaml"
    lines = path.read_text().splitlines()
    header = lines[:next(i for i, ln in enumerate(lines) if not ln.startswith("#"))]
    header = header[:next((i for i, ln in enumerate(header) if ln.startswith(replaces)),
                          len(header))]
    recipe = OmegaConf.load(path)
    for key, value in params.items():
        if key in GROUPS:
            recipe.defaults = [{**d, f"override /{key}": value} if f"override /{key}" in d else d
                               for d in recipe.defaults]
            if not any(f"override /{key}" in d for d in recipe.defaults):
                recipe.defaults.append({f"override /{key}": value})
        else:
            OmegaConf.update(recipe, key, value, force_add=True)
    path.write_text("\n".join(header + [note]) + "\n" + OmegaConf.to_yaml(recipe))
    return path


def from_studies(where: Path, names: list) -> None:
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
        note = f"# Tuned: the best trial of study {study.study_name} (make tune-recipes), trial " \
            f"{best.number}, val_acc {best.value:.4f}" + \
            (f" (best of the other seed: {others})" if others else "")
        print(f"{update(name, best.params, note, TUNED)}: {best.params}")


def from_budget(csv: Path) -> None:
    wanted = "give the aggregator's results.csv of experiment=augment_budget (make augment-budget)"
    try:
        runs = pd.read_csv(csv)
    except (OSError, pd.errors.ParserError) as err:
        sys.exit(f"error: {csv}: cannot read it ({type(err).__name__}); {wanted}")
    missing = {"recipe", "augment", "val_acc", "status"} - set(runs.columns)
    if missing:
        sys.exit(f"error: {csv}: no column {', '.join(sorted(missing))}; {wanted}")
    runs = runs[runs.status == "completed"]
    if runs.empty:
        sys.exit(f"error: {csv}: no completed run")
    for name, group in runs.groupby("recipe"):
        val = group.groupby("augment").val_acc.mean()
        # ties go to `none`, then name order: sorting is stable
        val = val.sort_index(key=lambda idx: idx != "none").sort_values(ascending=False,
                                                                         kind="stable")
        seeds = group.seed.nunique() if "seed" in group else 1
        scores = ", ".join(f"{a} {v:.4f}" for a, v in val.items())
        note = f"{AUGMENT} {val.index[0]}, the best validation accuracy of experiment=" \
            f"augment_budget (make augment-budget, {seeds} seed{'s' * (seeds > 1)}): {scores}"
        print(f"{update(name, {'augment': val.index[0]}, note, (AUGMENT,))}: {val.index[0]}")


def main(argv) -> int:
    if not argv or argv == ["--augment"]:
        sys.exit(__doc__.split("\n\n")[1].strip())
    if argv[0] == "--augment":
        from_budget(Path(argv[1]))
    else:
        where = Path(argv[0])
        from_studies(where, argv[1:] or [p.stem for p in sorted(RECIPES.glob("*.yaml"))])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
