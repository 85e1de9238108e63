"""Which way each metric is optimized, and the check of an Optuna sweep's directions against them.

`sweep_objectives` is the Optuna sweeper's `objectives` function for snn_sweep
(conf/hydra/sweeper/optuna_trials.yaml): a job returns optimized_metric, and pareto_metric too
when the sweeper has two directions (snn_sweep/__main__.py).
"""
import itertools
from typing import Any, List, Optional


def direction_for(metric: Optional[str]) -> Optional[str]:
    """How a metric is tuned: accuracy up; loss, spikes, synaptic operations (NeuroBench's
    effective ACs and MACs too), energy down."""
    kind = str(metric).rsplit("_", 1)[-1] if metric else ""
    if kind == "acc":
        return "maximize"
    if kind == "loss" or any(w in str(metric) for w in ("energy", "spikes", "synops",
                                                          "effective_acs", "effective_macs")):
        return "minimize"
    return None


def sweep_objectives(config: Any, directions: List[str]) -> Optional[List[str]]:
    """The study's metric names (optimized_metric, then pareto_metric) where the config names
    one per direction, else None; ValueError (one line) for directions the jobs cannot serve:
    more than two, two without pareto_metric, one that does not fit its metric."""
    keys = list(itertools.takewhile(lambda k: k in config, ("optimized_metric", "pareto_metric")))
    metrics = [config[k] for k in keys][:len(directions)]
    if "pareto_metric" in keys:  # a job returns 1 objective, or 2 with this one
        if len(directions) > 2:
            raise ValueError(f"hydra.sweeper.direction has {len(directions)} entries; this "
                             f"app returns 1 (optimized_metric) or 2 (and pareto_metric)")
        if len(directions) == 2 and config.pareto_metric is None:
            raise ValueError("two directions need pareto_metric (the second objective), "
                             "e.g. pareto_metric=val_energy_pj_per_sample")
    wanted = [direction_for(m) or d for m, d in itertools.zip_longest(metrics, directions)]
    if wanted != directions:
        show = lambda ds: ds[0] if len(ds) == 1 else f"[{','.join(ds)}]"  # noqa: E731
        key, metric = next((k, m) for k, m, w, d in zip(keys, metrics, wanted, directions)
                           if w != d)
        raise ValueError(f"{key}={metric} needs hydra.sweeper.direction={show(wanted)}, "
                         f"not {show(directions)}")
    named = len(metrics) == len(directions) and all(isinstance(m, str) for m in metrics)
    return metrics if named else None
