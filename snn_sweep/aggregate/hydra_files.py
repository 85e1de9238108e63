"""A job's .hydra/ files: its group choices, swept values and config, a few lines at a time."""
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml
from omegaconf import OmegaConf

from .errors import Unusual, _one_line

try:  # OmegaConf's YAML rules (libyaml's parser, its float and no-timestamp resolvers)
    from omegaconf._yaml import get_yaml_loader
except ImportError:  # omegaconf < 2.4
    from omegaconf._utils import get_yaml_loader
YAML_LOADER = get_yaml_loader()

Row = Dict[str, Any]


def _plain(value: Any) -> Any:
    """A cell value: lists and dicts from the config become JSON text."""
    if value is None or isinstance(value, (str, int, float)):  # most: no container to check
        return value
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def _key(override: str) -> str:
    """The config key of an override: `+a.b=1` -> a.b, `model@x=snn` -> model."""
    return str(override).split("=", 1)[0].lstrip("+~").split("@")[0]


def read_hydra(job: Path, problems: List[str]
               ) -> Optional[Tuple[Row, List[str], List[str], Optional["JobConfig"]]]:
    """The job's group choices and swept values, their names and its config (None without
    .hydra/config.yaml); None (reported in problems) when a file is corrupt."""
    try:
        return read_hydra_fast(job)
    except Exception:  # anything unusual, errors included: OmegaConf reads it, as it always did
        return read_hydra_exact(job, problems)


def read_hydra_exact(job: Path, problems: List[str]
                     ) -> Optional[Tuple[Row, List[str], List[str], Optional["JobConfig"]]]:
    """read_hydra through OmegaConf objects: the reading the fast one must match."""
    row: Row = {"job_dir": str(job)}
    hydra_dir = job / ".hydra"
    path = hydra_dir / "config.yaml"
    try:
        cfg = OmegaConf.load(path) if path.is_file() else None
        path = hydra_dir / "hydra.yaml"
        choices = OmegaConf.load(path).hydra.runtime.choices if path.is_file() else {}
        path = hydra_dir / "overrides.yaml"
        overrides = list(OmegaConf.load(path)) if path.is_file() else []
    except Exception as e:
        problems.append(f"skipped {path}: unreadable ({type(e).__name__}: {_one_line(e)})")
        return None
    # Group choices (model=snn ...), not Hydra's own groups nor the schema entries.
    groups = [k for k in choices if "/" not in k]
    row.update({k: choices[k] for k in groups})
    # Swept values (any key=value override that is not a group choice), typed from the config.
    swept = [k for k in map(_key, overrides) if k not in choices and cfg is not None]
    row.update({k: _plain(OmegaConf.select(cfg, k, default=None)) for k in swept})
    config = None if cfg is None else JobConfig(hydra_dir / "config.yaml", cfg=cfg)
    return row, groups, swept, config


def read_hydra_fast(job: Path) -> Tuple[Row, List[str], List[str], Optional["JobConfig"]]:
    """read_hydra from the few lines it uses; raises on anything it does not vouch for."""
    row: Row = {"job_dir": str(job)}
    hydra_dir = os.path.join(row["job_dir"], ".hydra")
    text = {name: _text(os.path.join(hydra_dir, name))
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml")}  # None: no such file
    config = None if text["config.yaml"] is None else JobConfig(
        Path(hydra_dir, "config.yaml"), text["config.yaml"])
    choices = {} if text["hydra.yaml"] is None else _value(text["hydra.yaml"],
                                                           "hydra.runtime.choices")
    if not isinstance(choices, dict) or any(isinstance(v, (list, dict))
                                            for v in choices.values()):
        raise Unusual("hydra.runtime.choices")
    overrides = [] if text["overrides.yaml"] is None else _overrides(text["overrides.yaml"])
    groups = [k for k in choices if "/" not in k]
    row.update({k: choices[k] for k in groups})
    swept = [k for k in map(_key, overrides) if k not in choices and config is not None]
    row.update({k: _plain(config.select(k)) for k in swept})
    if config is not None and not os.path.isfile(os.path.join(row["job_dir"], "result.json")):
        config.select("repeats"), config.select("seed")  # seed_runs's: any error raised here
    return row, groups, swept, config


class JobConfig:
    """A job's .hydra/config.yaml, read a key at a time: the key's own lines (_value), or, for a
    value only OmegaConf gives right (an interpolation such as ${data.shape}), the whole file
    loaded by OmegaConf."""

    def __init__(self, path: Path, text: Optional[str] = None, cfg: Any = None):
        self.path, self.text, self.cfg = path, text, cfg
        self.cuts: Dict[str, str] = {}  # a key's lines, for its sub-keys (data.root, data.seed)

    def select(self, key: str, default: Any = None) -> Any:
        if self.cfg is None:
            try:
                return _value(self.text, key, self.cuts)
            except Exception:
                self.cfg = OmegaConf.load(self.path)
        return OmegaConf.select(self.cfg, key, default=default)


def _text(path: str) -> Optional[str]:
    """The file's text as OmegaConf.load reads it, None when there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _lines(text: str, key: str, indent: int) -> str:
    """The lines of `key:` and its value in a mapping whose keys are at `indent` spaces, as
    yaml.dump writes it (block style, 2-space steps, a value's continuation lines deeper): from
    the key's line to the next line at that indent or less that is not one of its list items."""
    text = "\n" + text  # each line after a newline; patterns that start with one scan fast
    key_line, after = _patterns(key, indent)
    found = key_line.search(text)
    if not found or key_line.search(text, found.end()):  # none, or a duplicate key
        raise Unusual(key)
    end = after.search(text, found.start() + 1)
    return text[found.start() + 1:end.start() + 1 if end else len(text)]


@functools.lru_cache(maxsize=1024)
def _patterns(key: str, indent: int) -> Tuple[re.Pattern, re.Pattern]:
    """_lines's: the key's line; the newline after its last line."""
    pad = " " * indent
    return (re.compile(f"\n{pad}{re.escape(key)}:[ \n]"),
            re.compile(f"\n(?!{pad} |{pad}-[ \n]|\n| *#)"))  # a comment line is no end


def _value(text: str, key: str, cuts: Optional[Dict[str, str]] = None) -> Any:
    """The value of a dotted key in the YAML text of a mapping, parsed from its own lines (cuts:
    those found so far, by key); raises Unusual unless it is found that way and is what
    OmegaConf would give as it is."""
    parts = key.split(".")
    cuts = {} if cuts is None else cuts
    for depth, part in enumerate(parts):
        prefix = ".".join(parts[:depth + 1])
        if prefix not in cuts:
            cuts[prefix] = _lines(text, part, 2 * depth)
        text = cuts[prefix]
    return _leaf(text, parts[-1])


@functools.lru_cache(maxsize=16384)
def _leaf(text: str, key: str) -> Any:
    """The value of the lines `key: value`, parsed once per text (most recur across a sweep's
    jobs; the value is shared, not to be changed); raises Unusual unless it is plain."""
    parsed = yaml.load(text, Loader=YAML_LOADER)
    if not (isinstance(parsed, dict) and list(parsed) == [key] and _is_plain(parsed[key])):
        raise Unusual(key)
    return parsed[key]


def _is_plain(value: Any) -> bool:
    """Plain YAML values with no interpolation (${...}) and no missing value (???) in them."""
    if isinstance(value, str):
        return "${" not in value and value != "???"
    if isinstance(value, list):
        return all(map(_is_plain, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float))


def _overrides(text: str) -> List[Any]:
    """overrides.yaml's list, one `- item` line at a time (most lines recur across jobs)."""
    if text.strip() == "[]":
        return []
    return [_item(line) for line in text.splitlines()]


@functools.lru_cache(maxsize=16384)
def _item(line: str) -> Any:
    """The item of a line `- item`, parsed once per text; raises Unusual unless it is plain."""
    parsed = yaml.load(line, Loader=YAML_LOADER) if line.startswith("- ") else None
    if not (isinstance(parsed, list) and len(parsed) == 1 and _is_plain(parsed[0])):
        raise Unusual(line)
    return parsed[0]
