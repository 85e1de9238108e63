"""Record how long a make target took, as a row of docs/results/wall_time.md.

    python scripts/wall_time.py --start SWEEP_DIR     before the target's first run
    python scripts/wall_time.py --resume SWEEP_DIR    instead, when RESUME=1 continues it
    python scripts/wall_time.py TARGET SWEEP_DIR      after its last run

The target's time is kept in SWEEP_DIR.start, a line per segment: its start and end in seconds
since the epoch, the last segment's end missing while it runs. --resume ends a killed segment
at the newest file under SWEEP_DIR (runs write theirs after every epoch, so at most an epoch
before the kill: the time lost to the kill is not counted) and starts another. The row says
when the target started, its wall time (its segments' sum, up to now) and the cores it had; a
target run again replaces its row, the others stay. Below the table, the comparison's whole
pipeline (the sum of its three targets' rows) against issue 21's bound. The Makefile calls
this, so the wall times in docs/results.md come from the runs themselves.
"""
import os
import sys
import time
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "docs" / "results" / "wall_time.md"
HEADER = ["| make target | started (UTC) | wall_time_min | cores |",
          "|:------------|:--------------|--------------:|------:|"]
PIPELINE = ("tune-recipes", "augment-budget", "comparison")  # the comparison, from the studies on
BOUND_MIN = 180  # issue 21: the whole pipeline in at most 3 hours on this machine


def pipeline(rows) -> str:
    """The pipeline's wall time, the sum of its targets' rows, against the bound."""
    minutes = {r.split("|")[1].strip(): float(r.split("|")[3]) for r in rows}
    missing = [t for t in PIPELINE if t not in minutes]
    total = sum(minutes.get(t, 0.0) for t in PIPELINE)
    name = f"The pipeline (`make {' '.join(PIPELINE)}`"
    if missing and total > BOUND_MIN:
        return f"{name}): MISSED the bound of {BOUND_MIN} min already: the rows it has sum " \
            f"to {total:.1f} min (no row yet for {', '.join(missing)})."
    if missing:
        return f"{name}): not measured yet (no row for {', '.join(missing)})."
    return f"{name}, its rows' sum): {total:.1f} min against a bound of {BOUND_MIN} min: " \
        f"{'met' if total <= BOUND_MIN else 'MISSED'}."


def segments(stamp: Path) -> list:
    """SWEEP_DIR.start's segments, [start, end] or [start] for the one running."""
    try:
        spans = [[int(x) for x in ln.split()] for ln in stamp.read_text().splitlines()
                 if ln.strip()]
        if not spans or any(len(s) != 2 for s in spans[:-1]) or len(spans[-1]) not in (1, 2):
            raise ValueError("a segment without its end before the last, or none")
    except (OSError, ValueError) as e:
        sys.exit(f"error: {stamp}: not a wall-time record (lines of 'START [END]' in seconds: "
                 f"{e}); run the target without RESUME=1")
    return spans


def newest(where: Path) -> int:
    """The newest modification time of a file under WHERE (0 if it holds none)."""
    return int(max((p.stat().st_mtime for p in where.rglob("*") if p.is_file()), default=0))


def write(stamp: Path, spans: list) -> None:
    stamp.write_text("".join(" ".join(map(str, s)) + "\n" for s in spans))


def main(argv) -> int:
    if len(argv) != 2 or not argv[1]:
        sys.exit(__doc__.split("\n\n")[1].rstrip())
    what, sweep_dir = argv[0], Path(argv[1])
    stamp = sweep_dir.with_name(sweep_dir.name + ".start")
    now = int(time.time())
    if what == "--start":
        stamp.parent.mkdir(parents=True, exist_ok=True)
        write(stamp, [[now]])
        return 0
    if not stamp.exists():
        sys.exit(f"error: {stamp}: no such file: {sweep_dir} was never started by its make "
                 f"target (run it without RESUME=1)")
    spans = segments(stamp)
    if what == "--resume":
        if len(spans[-1]) == 1:  # killed: ended with the last file it wrote
            spans[-1].append(max(spans[-1][0], newest(sweep_dir)))
        write(stamp, spans + [[now]])
        print(f"{sweep_dir}: resuming (segment {len(spans) + 1})")
        return 0
    if len(spans[-1]) == 1:
        spans[-1].append(now)
    write(stamp, spans)
    minutes = sum(end - start for start, end in spans) / 60
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(spans[0][0]))
    row = f"| {what} | {started} | {minutes:.1f} | {os.cpu_count()} |"
    rows = TABLE.read_text().splitlines()[len(HEADER):] if TABLE.exists() else []
    rows = [r for r in rows if r.startswith("| ") and not r.startswith(f"| {what} |")] + [row]
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join(HEADER + rows) + "\n\n" + pipeline(rows) + "\n")
    print(f"{TABLE}: {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
