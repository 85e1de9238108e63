"""The command line: compose the config and train one run, or a sweep with -m.

`python -m snn_sweep [overrides]` (or `snn-sweep`). The configs ship in the package
(snn_sweep/conf); a user's own options join them from a folder on Hydra's search path:
`--config-dir conf` or `hydra.searchpath=[file://conf]`."""
import logging
import os
import shlex
import sys
from typing import Dict, List, Optional, Tuple, Union

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, HydraException
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from .build import LAUNCH_DIR, launch_dir_importable, local_modules
from .config import register_configs
from .errors import InputError
from .callbacks import HYDRA_TARGETS, shown
from .loggers import Loggers
from .optuna_trial import reporter_from_hydra, trial_info
from .train import RunInterrupted, RunPruned, train_result

register_configs()
log = logging.getLogger("snn_sweep")


# HYDRA_TARGETS: the config-named code Hydra itself builds (the sweep callback, the Optuna
# sweeper's objectives check), allowed from here as Hydra's execution policy asks.
@hydra.main(config_path="conf", config_name="config",
            execution_whitelist=[*HYDRA_TARGETS, *(f"{m}.*" for m in local_modules(LAUNCH_DIR))])
def main(cfg) -> Union[float, Tuple[float, float]]:
    hc = HydraConfig.get()
    out_dir = hc.runtime.output_dir
    if cfg.trainer.threads is None:
        cfg.trainer.threads = launcher_threads(hc)
    if requeued(hc):  # submitit requeued this job after a preemption or time-out
        cfg.trainer.resume = True
    with open_dict(cfg):  # a user's option without a name is called by its file's name
        for group in ("model", "encoder", "neuron", "optimizer"):
            if cfg[group].get("name") is None and hc.runtime.choices.get(group):
                cfg[group].name = hc.runtime.choices[group]
    multirun = hc.mode == RunMode.MULTIRUN
    loggers = Loggers(cfg, out_dir, name=os.path.basename(out_dir) if multirun else out_dir,
                      sweep_dir=hc.sweep.dir if multirun else None)
    # In an Optuna sweep the sweeper passes the trial number and study in env_set.
    reporter = reporter_from_hydra(hc)

    def on_epoch(step: int, row: Dict) -> bool:
        loggers.epoch(step, row)
        return reporter is not None and reporter(step, row[cfg.optimized_metric])
    try:
        result = train_result(cfg, out_dir, {**trial_info(hc.job.env_set), **launch(hc, cfg)},
                              on_epoch)
    except RunPruned as e:
        loggers.finish({"status": "pruned"})
        import optuna  # only a TrialReporter prunes, so this is an Optuna sweep

        raise optuna.TrialPruned(str(e)) from e
    except RunInterrupted as e:
        loggers.finish({"status": "interrupted"})
        log.warning(f"interrupted ({e}); to resume: {resume_command(hc, multirun)}")
        sys.exit(128 + e.signum)  # the shell's status for a signal; a sweep stops here too
    except BaseException as e:
        loggers.finish({"status": "failed"})
        if not isinstance(e, CompactHydraException):
            raise  # a bug: its traceback
        if multirun:  # the sweeper records the failed job, goes on, and lists it at the end
            log.error(f"error: {e}")
            raise
        sys.exit(f"error: {e}")  # one line, exit status 1, no traceback
    loggers.finish(result)
    if not multirun:
        log.info(f"Done: the run's files are in {shown(out_dir)}")
    if reporter is not None and cfg.repeats > 1:
        reporter.set_user_attrs({"objective_mean": result["objective"], "seeds": result["seeds"],
                                 **{k: result[k] for k in ("objective_std", "objective_per_seed")}})
    # A sweeper with two directions asks for the Pareto metric too.
    if OmegaConf.is_list(OmegaConf.select(hc, "sweeper.direction")) and \
            len(hc.sweeper.direction) == 2:
        if cfg.pareto_metric is None:
            raise InputError("the sweeper has two directions: set pareto_metric")
        return result["objective"], result[cfg.pareto_metric]
    return result["objective"]


def launch(hc, cfg) -> Dict:
    """How Hydra composed the job, for its run record: the group choices, the command line's
    overrides, and the resolved value of each overridden key that is not a group choice."""
    choices = {k: v for k, v in hc.runtime.choices.items() if "/" not in k}
    overrides = list(hc.overrides.task)
    keys = [str(o).split("=", 1)[0].lstrip("+~").split("@")[0] for o in overrides]
    swept = {}
    for key in dict.fromkeys(keys):
        if key not in choices:
            value = OmegaConf.select(cfg, key, default=None)
            swept[key] = OmegaConf.to_container(value, resolve=True, enum_to_str=True) \
                if OmegaConf.is_config(value) else getattr(value, "value", value)
    return {"choices": choices, "overrides": overrides, "swept": swept}


def resume_command(hc, multirun: bool) -> str:
    """The command line that continues this run (a sweep: the whole sweep) from resume.pt."""
    if multirun:
        dir_key, out = "hydra.sweep.dir", hc.sweep.dir
        args = [a for a in sys.argv[1:] if a not in ("-m", "--multirun")]
    else:
        dir_key, out = "hydra.run.dir", hc.runtime.output_dir
        args = list(hc.overrides.task)
    keep = [a for a in args if not a.startswith((dir_key + "=", "trainer.resume="))]
    return shlex.join(["python", "-m", "snn_sweep", *(["-m"] if multirun else []), *keep,
                       f"{dir_key}={os.path.abspath(out)}", "trainer.resume=true"])


def requeued(hc) -> bool:
    """A job of the submitit launcher that SLURM requeued (SLURM_RESTART_COUNT > 0): it goes on
    from its resume.pt, in the same job dir."""
    target = str(OmegaConf.select(hc, "launcher._target_", default="") or "")
    return "submitit" in target and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def launcher_threads(hc) -> Optional[int]:
    """torch threads for a job that shares the machine with others: with joblib's n_jobs jobs
    side by side, cores // n_jobs (so jobs x threads <= cores); with submitit, the CPUs the job
    was given (cpus_per_task); None (torch's default) with the sequential launcher."""
    launcher = OmegaConf.select(hc, "launcher", default={}) or {}
    target = str(launcher.get("_target_", ""))
    if "joblib" in target:
        cores = os.cpu_count() or 1
        jobs = launcher.get("n_jobs") or cores
        return max(1, cores // (cores if jobs < 0 else jobs))
    if "submitit" in target and launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None


def flags_first(argv: List[str]) -> List[str]:
    """Move -m/--multirun before the overrides. Hydra parses its command line with argparse,
    which takes overrides in one run only, so the card's `model=snn encoder=rate -m
    timesteps=1,10,25` would fail with "unrecognized arguments: timesteps=1,10,25"."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return argv[:1] + flags + [a for a in argv[1:] if a not in flags]


def per_job_overrides(args: List[str]) -> List[str]:
    """A multirun's plain overrides of keys under a swept group (`model.beta=0.9` beside
    `-m model=tut6,fast_tut6`) as one-value sweeps (`model.beta=choice(0.9)`). Hydra applies
    plain overrides to the sweep-level config too, composed with the group's default (sweeps
    are skipped there), where a key only the swept options have fails against the default's
    schema; a sweep is applied in each job's own composition only, where a misspelt key of a
    built-in option still fails against that option's schema."""
    if "-m" not in args and "--multirun" not in args:
        return args
    parser, parsed = OverridesParser.create(), {}
    for i, arg in enumerate(args):
        try:  # flags and their values are no overrides; Hydra reports a malformed one itself
            parsed[i] = None if arg.startswith("-") else parser.parse_override(arg)
        except HydraException:
            parsed[i] = None
    swept = {o.key_or_group for o in parsed.values() if o and o.is_sweep_override()}
    return [f"{a.split('=', 1)[0]}=choice({a.split('=', 1)[1]})"
            if o and not (o.is_sweep_override() or o.is_add() or o.is_delete())
            and o.key_or_group.split(".")[0] in swept and "." in o.key_or_group else a
            for a, o in zip(args, parsed.values())]


def cli() -> None:
    """The console script `snn-sweep`, the same as `python -m snn_sweep`."""
    launch_dir_importable()
    sys.argv = flags_first(sys.argv)
    sys.argv = sys.argv[:1] + per_job_overrides(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
