"""Table cells of a job's settings, and the fallback for runs made before the run record."""
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from .errors import _one_line

Row = Dict[str, Any]


def _plain(value: Any) -> Any:
    """A cell value: lists and dicts (JSON values or config nodes) become JSON text."""
    if value is None or isinstance(value, (str, int, float)):  # most: no container to check
        return value
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def group_names(choices: Iterable[str]) -> List[str]:
    """The group choices that are columns (model=snn ...): not Hydra's own groups
    (hydra/launcher) nor the schema entries (schema/model@model)."""
    return [k for k in choices if "/" not in k]


def _key(override: str) -> str:
    """The config key of an override: `+a.b=1` -> a.b, `model@x=snn` -> model."""
    return str(override).split("=", 1)[0].lstrip("+~").split("@")[0]


def read_hydra(job: Path, problems: List[str]
               ) -> Optional[Tuple[Row, List[str], List[str], Optional[DictConfig]]]:
    """A run made before the run record: its group choices and swept values (typed from its
    config) from .hydra/, read by OmegaConf, their names, and its config (None without
    .hydra/config.yaml); None (reported in problems) when a file is unreadable."""
    row: Row = {"job_dir": str(job)}
    hydra_dir = job / ".hydra"
    path = hydra_dir / "config.yaml"
    try:
        cfg = OmegaConf.load(path) if path.is_file() else None
        path = hydra_dir / "hydra.yaml"
        choices = OmegaConf.load(path).hydra.runtime.choices if path.is_file() else {}
        path = hydra_dir / "overrides.yaml"
        overrides = list(OmegaConf.load(path)) if path.is_file() else []
        groups = group_names(choices)
        row.update({k: choices[k] for k in groups})
        # Swept values: any key=value override that is not a group choice.
        swept = [k for k in map(_key, overrides) if k not in choices and cfg is not None]
        path = hydra_dir / "config.yaml"  # an interpolation there may not resolve
        row.update({k: _plain(OmegaConf.select(cfg, k, default=None)) for k in swept})
    except Exception as e:
        problems.append(f"skipped {path}: unreadable ({type(e).__name__}: {_one_line(e)})")
        return None
    return row, groups, swept, cfg
