"""Record how long a make target took, as a row of docs/results/wall_time.md.

    python scripts/wall_time.py TARGET START

START is the target's start in seconds since the epoch (`date +%s` before its first command);
the row says when it started, its wall time up to now and the cores it had. A target run again
replaces its row; the others stay. The Makefile calls this at the end of the long targets, so
the wall times in docs/results.md come from the runs themselves.
"""
import os
import sys
import time
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "docs" / "results" / "wall_time.md"
HEADER = ["| make target | started (UTC) | wall_time_min | cores |",
          "|:------------|:--------------|--------------:|------:|"]


def main(argv) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        sys.exit(__doc__.split("\n\n")[1].strip())
    target, start = argv[0], int(argv[1])
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(start))
    row = f"| {target} | {started} | {(time.time() - start) / 60:.1f} | {os.cpu_count()} |"
    rows = TABLE.read_text().splitlines()[len(HEADER):] if TABLE.exists() else []
    rows = [r for r in rows if not r.startswith(f"| {target} |")] + [row]
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join(HEADER + rows) + "\n")
    print(f"{TABLE}: {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
