"""Fill the generated blocks of a Markdown file from the files they name.

    <!-- include docs/results/snn_vs_ann/summary.md -->
    (replaced by that file's text)
    <!-- end include -->

Every table and figure reference in the README comes from a file that a run wrote
(`make results`, `make bench`); this copies them in, so no number is ever typed by hand. A file
that is not Markdown (the example a test runs: .py, .yaml) comes in as a fenced code block.
Paths are relative to the Markdown file. Usage: python scripts/include.py [README.md ...]
"""
import os
import re
import sys
import tempfile

FENCED = {".py": "python", ".yaml": "yaml", ".sh": "bash"}  # extension -> code block language
BLOCK = re.compile(r"(<!-- include (\S+) -->\n)(.*?)(<!-- end include -->)", re.S)


def fill(path: str) -> int:
    with open(path) as f:
        text = f.read()
    base = os.path.dirname(os.path.abspath(path))
    missing = []

    def body(match: re.Match) -> str:
        src = os.path.join(base, match.group(2))
        if not os.path.isfile(src):
            missing.append(match.group(2))
            return match.group(0)
        with open(src) as f:
            content = f.read().rstrip("\n") + "\n"
        lang = FENCED.get(os.path.splitext(src)[1])
        if lang is not None:
            content = f"```{lang}\n{content}```\n"
        return match.group(1) + content + match.group(4)

    new, count = BLOCK.subn(body, text)
    if missing:  # leave the file as it was rather than half-filled
        sys.exit(f"error: {path}: included file(s) not found: {', '.join(missing)} "
                 "(run `make results` / `make bench` first)")
    fd, tmp = tempfile.mkstemp(dir=base, prefix=".tmp-")
    os.fchmod(fd, os.stat(path).st_mode & 0o777)  # mkstemp makes it 0600
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, path)
    return count


if __name__ == "__main__":
    for md in sys.argv[1:] or ["README.md"]:
        print(f"{md}: filled {fill(md)} block(s)")
