"""A run dir's files: atomic writes of result.json, metrics.csv, resume.pt and checkpoint.pt, and the lookup of a completed run."""
import csv
import io
import json
import logging
import os
import shutil
import tempfile
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from .errors import InputError
from .record import matches

log = logging.getLogger(__name__)

RESULT = "result.json"
RESUME = "resume.pt"  # the run dir's resumable checkpoint, rewritten after every epoch
CHECKPOINT = "checkpoint.pt"
TRAINED = ("metrics.csv", CHECKPOINT)  # what a completed run leaves besides result.json


def write_atomic(path: str, data: bytes) -> None:
    """Temp file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
    os.fchmod(fd, 0o644)  # mkstemp makes it 0600; run dirs are shared with other people
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path: str, obj: Dict) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def write_csv(path: str, rows: List[Dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


def read_record(path: str) -> Optional[Dict]:
    """A result.json as a dict; None when missing or unreadable."""
    try:
        with open(path) as f:
            done = json.load(f)
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def _sweep_jobs(out_dir: str) -> List[str]:
    """The job dirs of out_dir's multirun (siblings next to Hydra's multirun.yaml), else []."""
    sweep = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isfile(os.path.join(sweep, "multirun.yaml")):
        return []
    return [os.path.join(sweep, name) for name in sorted(os.listdir(sweep))]


def _run_dirs(top: str) -> Iterator[str]:
    """The dirs under TOP holding a result.json, each level sorted by name, dot dirs skipped."""
    for root, subdirs, files in os.walk(top):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        if RESULT in files:
            yield root


def _candidates(out_dir: str, reuse: Iterable[str]) -> Iterator[Tuple[str, str]]:
    """(where, run dir) in the order a completed run is looked for: the run dir itself
    ("self"), the other jobs of its sweep ("sibling"), then the trainer.reuse dirs ("reuse")."""
    yield "self", out_dir
    out = os.path.abspath(out_dir)
    for path in _sweep_jobs(out_dir):
        if os.path.abspath(path) != out:
            yield "sibling", path
    for top in reuse:
        for path in _run_dirs(top):
            if os.path.abspath(path) != out:
                yield "reuse", path


def find_completed(cfg, out_dir: str, sha: str) -> Optional[Tuple[str, str, Dict]]:
    """(where, run dir, result) of the first completed run of cfg (record.matches) among
    _candidates; None when there is none. A relaunched run, a duplicate job of a sweep and
    trainer.reuse share this one lookup."""
    for where, path in _candidates(out_dir, cfg.trainer.reuse):
        done = read_record(os.path.join(path, RESULT))
        if done is not None and done.get("status") == "completed" and matches(done, cfg, sha):
            return where, path, done
    return None


def copy_trained(src: str, dst: str) -> None:
    """A completed run's files but result.json, from run dir SRC into DST."""
    for name in TRAINED:
        if os.path.exists(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))


def save_resume(out_dir: str, state: Dict) -> None:
    import torch  # here, so that the aggregator, which reads these files, starts without it
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(os.path.join(out_dir, RESUME), buf.getvalue())


def load_resume(out_dir: str, cfg, sha: str) -> Optional[Dict]:
    """resume.pt of this config, or None when the run dir has none."""
    import torch
    path = os.path.join(out_dir, RESUME)
    if not os.path.isfile(path):
        log.info("trainer.resume=true: no %s in %s yet, starting at epoch 1 (to continue a "
                 "killed run, name its dir: hydra.run.dir=<its run dir> trainer.resume=true; "
                 "a killed sweep: -m ... hydra.sweep.dir=<its sweep dir> trainer.resume=true)",
                 RESUME, out_dir)
        return None
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:
        raise InputError(f"trainer.resume=true: {path} is unreadable ({type(e).__name__}); "
                         f"remove it to start over") from None
    if not matches(state, cfg, sha):
        raise InputError(f"trainer.resume=true: {path} belongs to a run of another config; "
                         f"resume with that config, or remove it to start over")
    return state


def finish(out_dir: str, result: Dict) -> None:
    """The final result.json; resume.pt goes, since there is nothing left to resume."""
    write_json(os.path.join(out_dir, RESULT), result)
    if os.path.exists(os.path.join(out_dir, RESUME)):
        os.remove(os.path.join(out_dir, RESUME))
