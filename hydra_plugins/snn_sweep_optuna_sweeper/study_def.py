"""What defines a study (its search space and the task's fixed overrides): its derived name, and
the check that a continued study is asked for the same thing.

A study opened without study_name gets a name derived from its definition (a readable prefix of
the group choices and tuned keys, and a short hash of the whole), so the same command relaunched
continues the same study. The definition is stored in the study's user attributes when it is
created; a later sweep that asks the same study for another one is refused in one line naming
what differs, unless hydra.sweeper.allow_changes=true.
"""
import hashlib
import json
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

ATTR = "study_definition"  # the study's user attribute holding its definition


def parse_space(params: Sequence[str], arguments: Sequence[str]
                ) -> Tuple[Dict[str, Any], Dict[str, Any], List[str]]:
    """The search space, fixed params and deletions of `params` (k=v lines) and the task's
    overrides, parsed as upstream parses them; a key fixed anywhere is not tuned."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    space, fixed, fixed_overrides = create_params_from_overrides([*params, *arguments])
    for name in fixed:
        space.pop(name, None)
    return space, fixed, fixed_overrides


def study_name(config: Any) -> Optional[str]:
    """The name of the study a sweep with this (Hydra) config opens: hydra.sweeper.study_name,
    or the name derived from its definition (what the sweeper derives); None without one."""
    sweeper = config.hydra.sweeper
    if sweeper.get("study_name") is not None or "not_in_study" not in sweeper:
        return sweeper.get("study_name")
    params = [f"{k!s}={v}" for k, v in (sweeper.get("params") or {}).items()]  # as upstream
    space, fixed, deleted = parse_space(params, list(config.hydra.overrides.task))
    return derived_name(definition(space, fixed, deleted, sweeper.not_in_study), list(space))


def definition(space: Mapping[str, Any], fixed: Mapping[str, Any],
               fixed_overrides: Sequence[str], ignored: Sequence[str] = ()) -> Dict[str, str]:
    """Key -> text: each tuned key's distribution, each fixed override's value (the task's and
    the sweeper params'), each deletion; keys in `ignored` (or below them) left out."""
    def kept(key: str) -> bool:
        return not any(key == i or key.startswith(i + ".") for i in ignored)

    out = {k: repr(d) for k, d in space.items() if kept(k)}
    out.update({k: str(v) for k, v in fixed.items() if kept(k) and k not in space})
    out.update({o: "deleted" for o in fixed_overrides if kept(o.lstrip("~").split("=")[0])})
    return dict(sorted(out.items()))


def derived_name(defined: Mapping[str, str], space: Sequence[str]) -> str:
    """A stable, readable name: the group choices (keys without a dot, with a word for a
    value), the tuned keys' last parts, and 8 hex digits of the definition's hash, e.g.
    rate-tutorial5-num_hidden-1a2b3c4d."""
    digest = hashlib.sha256(json.dumps(dict(defined), sort_keys=True).encode()).hexdigest()[:8]
    words = [v for k, v in defined.items()  # group choices, e.g. model=tutorial5
             if "." not in k and k not in space and re.fullmatch(r"[A-Za-z][\w.-]*", v)]
    words += [k.split(".")[-1] for k in space if k in defined]
    prefix = "-".join(re.sub(r"[^\w.]+", "_", w) for w in words)[:48]
    return f"{prefix.strip('-')}-{digest}" if prefix else f"study-{digest}"


def differences(held: Mapping[str, str], wanted: Mapping[str, str]) -> List[str]:
    """The keys whose texts differ, in order."""
    return sorted(k for k in set(held) | set(wanted) if held.get(k) != wanted.get(k))


def check_definition(study: Any, wanted: Mapping[str, str], allow_changes: bool) -> None:
    """Store `wanted` in a study that holds no definition yet; refuse (ValueError, one line) a
    study that holds another one, unless allow_changes."""
    held = study.user_attrs.get(ATTR)
    if held is None:  # a new study (or one made before definitions were stored)
        study.set_user_attr(ATTR, dict(wanted))
        return
    keys = differences(held, wanted)
    if not keys or allow_changes:
        return

    def shown(d: Mapping[str, str]) -> str:
        return ", ".join(f"{k}={d[k]}" if k in d else f"{k} unset" for k in keys)

    raise ValueError(f"study {study.study_name!r} holds trials of {shown(held)}; this launch "
                     f"asks {shown(wanted)}: pass another hydra.sweeper.study_name, or "
                     f"hydra.sweeper.allow_changes=true to add its trials to this study")
