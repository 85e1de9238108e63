"""Record how long a make target took, as a row of docs/results/wall_time.md.

    python scripts/wall_time.py TARGET START

START is the target's start in seconds since the epoch (`date +%s` before its first command);
the row says when it started, its wall time up to now and the cores it had. A target run again
replaces its row; the others stay. Below the table, the comparison's whole pipeline (the sum of
its three targets' rows) against issue 21's bound, once all three have a row. The Makefile
calls this at the end of the long targets, so the wall times in docs/results.md come from the
runs themselves.
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
    if missing:
        return f"The pipeline (`make {' '.join(PIPELINE)}`): not measured yet " \
            f"(no row for {', '.join(missing)})."
    total = sum(minutes[t] for t in PIPELINE)
    return f"The pipeline (`make {' '.join(PIPELINE)}`, its rows' sum): {total:.1f} min " \
        f"against a bound of {BOUND_MIN} min: {'met' if total <= BOUND_MIN else 'MISSED'}."


def main(argv) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        sys.exit(__doc__.split("\n\n")[1].strip())
    target, start = argv[0], int(argv[1])
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(start))
    row = f"| {target} | {started} | {(time.time() - start) / 60:.1f} | {os.cpu_count()} |"
    rows = TABLE.read_text().splitlines()[len(HEADER):] if TABLE.exists() else []
    rows = [r for r in rows if r.startswith("| ") and not r.startswith(f"| {target} |")] + [row]
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join(HEADER + rows) + "\n\n" + pipeline(rows) + "\n")
    print(f"{TABLE}: {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
