"""Finding job dirs and reading each one's result.json into rows, one per run (seed)."""
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..record import NESTED, SETTINGS, TRIAL_FIELDS  # NESTED: shown as their own columns
from .errors import AggregateError, _one_line
from .hydra_files import Row, _plain, group_names, read_hydra

DROPPED = ("traceback",)  # kept in result.json; too long for a table
NO_RESULT = {"status": "unfinished", "error": "no result.json"}  # killed before its first write


def natural_key(path: Path) -> List[Any]:
    """Sort 2 before 10 in job numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_jobs(top: Path) -> List[Path]:
    """Every job dir under top: one with .hydra/config.yaml (a Hydra job) or result.json."""
    if not top.exists():
        raise AggregateError(f"{top}: no such directory")
    if not top.is_dir():
        raise AggregateError(f"{top}: not a directory")
    jobs = []
    for dirpath, dirnames, filenames in os.walk(top):
        if "result.json" in filenames or os.path.isfile(
                os.path.join(dirpath, ".hydra", "config.yaml")):
            jobs.append(Path(dirpath))
            dirnames[:] = []  # a job holds no other jobs
        else:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    if not jobs:
        raise AggregateError(f"{top}: no run directories found (looked for .hydra/config.yaml "
                             f"or result.json below it)")
    return sorted(jobs, key=natural_key)


def read_result(path: Path, problems: List[str]) -> Optional[Dict[str, Any]]:
    """result.json as written (NO_RESULT when there is none); None (reported) when corrupt."""
    if not path.is_file():
        return dict(NO_RESULT)
    try:
        result = json.loads(path.read_text())
        if not isinstance(result, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as e:
        problems.append(f"skipped {path}: corrupt ({_one_line(e)})")
        return None
    return result


def _cells(result: Dict[str, Any]) -> Row:
    """A result.json's table cells: its flat fields, then its context's (threads, device, host
    ...) where no field of that name comes first."""
    cells = {k: _plain(v) for k, v in result.items() if k not in DROPPED + NESTED}
    context = result.get("context")
    if isinstance(context, dict):  # a record's (read_record checks the job's)
        cells.update({k: _plain(v) for k, v in context.items() if k not in cells})
    return cells


def read_record(result: Dict[str, Any], job: Path) -> Tuple[Row, List[str], List[str]]:
    """A run record's (result.json with identity_version) group choices and swept values, as
    the trainer resolved them, and their names; ValueError when they are not JSON objects."""
    for field in ("choices", "swept", "context"):
        if not isinstance(result.get(field, {}), dict):
            raise ValueError(f"{field}: not a JSON object")
    choices, swept = result.get("choices", {}), result.get("swept", {})
    groups = group_names(choices)
    row: Row = {"job_dir": str(job), **{k: choices[k] for k in groups}}
    row.update({k: _plain(v) for k, v in swept.items()})
    return row, groups, list(swept)


def seed_runs(job: Path, result: Dict[str, Any], cfg: Optional[DictConfig]
              ) -> List[Tuple[Any, str]]:
    """(seed, sub-dir) of each seed a job trained with repeats=K > 1; [] for a plain job. From
    result.json, or, for a run made before the run record and killed before writing one, from
    its config (the trainer runs seeds seed, seed+1 ... in seed_<s>/)."""
    if "repeats" in result:
        repeats = result["repeats"]
    elif not (job / "result.json").is_file() and cfg is not None:
        repeats = OmegaConf.select(cfg, "repeats", default=1)
    else:
        return []
    if not isinstance(repeats, int) or repeats <= 1:
        return []
    first = result.get("seed", OmegaConf.select(cfg, "seed") if cfg is not None else None)
    seeds = result.get("seeds") or (
        [first + i for i in range(repeats)] if isinstance(first, int) else None)
    dirs = result.get("seed_dirs") or (
        [f"seed_{s}" for s in seeds] if isinstance(seeds, list) else None)
    if not (isinstance(seeds, list) and isinstance(dirs, list) and len(seeds) == len(dirs)
            and all(isinstance(d, str) for d in dirs)):
        raise ValueError(f"repeats={repeats} without matching seeds and seed_dirs lists")
    return list(zip(seeds, dirs))


def read_job(job: Path, problems: List[str]) -> Optional[Tuple[List[Row], List[str], List[str]]]:
    """The job's results rows (one, or one per seed of a job with repeats) with the names of its
    group choices and swept keys, or None (reported in problems) when a file of it is corrupt.
    A run record says them all; a run made before it (or killed before writing one) keeps
    them in .hydra/."""
    result = read_result(job / "result.json", problems)
    if result is None:
        return None
    cfg = None
    try:
        if "identity_version" in result:
            base, groups, swept = read_record(result, job)
        else:
            read = read_hydra(job, problems)
            if read is None:
                return None
            base, groups, swept, cfg = read
        runs = seed_runs(job, result, cfg)
    except ValueError as e:
        problems.append(f"skipped {job / 'result.json'}: corrupt ({_one_line(e)})")
        return None
    except OmegaConfBaseException as e:  # the config's repeats or seed
        problems.append(f"skipped {job / '.hydra' / 'config.yaml'}: unreadable "
                        f"({type(e).__name__}: {_one_line(e)})")
        return None
    if not runs:
        # result.json's settings are the effective ones (an ANN has no encoder), so they win.
        return [{**base, **_cells(result)}], groups, swept
    # Seeds share the job's settings; their metrics are their own (the job's are means).
    shared = _cells({k: v for k, v in result.items() if k in SETTINGS + TRIAL_FIELDS})
    if result["status"] == "pruned":  # the pruner stopped the job before these seeds ran
        missing = {"status": "pruned", "error": "not run: the job was pruned"}
    else:
        missing = {**NO_RESULT, "error": NO_RESULT["error"] + (
            f" (job {result['status']}: {result['error']})"
            if "error" in result and result != NO_RESULT else "")}
    rows = []
    for seed, sub in runs:
        own = read_result(job / sub / "result.json", problems)
        if own is not None:
            rows.append({**base, "job_dir": str(job / sub), "repeat_of": str(job), **shared,
                         "seed": seed, **_cells(missing if own == NO_RESULT else own)})
    return rows, groups, swept
