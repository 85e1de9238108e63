"""The docs hold together: the README's layout section names every module, package and script of
the tree, and every reference to a section (`README.md#anchor`, `docs/x.md#anchor`, a Markdown
link `[..](x.md#anchor)`) names a file that exists and a heading that exists in it."""
import re
from pathlib import Path
from typing import Iterable, List, Set

ROOT = Path(__file__).resolve().parents[1]
# What the section references are searched in: the code, configs and docs (not the generated
# docs/results/**, nor the environment, data and run folders).
SCANNED = ("README.md", "Makefile", "pyproject.toml", "docs", "snn_sweep", "bench",
           "hydra_plugins", "scripts", "tests", "examples", "notebooks")
SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".ipynb", ".txt", ""}
# (and this file, whose examples of the syntax name no real section)
SKIPPED = ("docs/results/", "__pycache__/", "tests/test_docs.py/")
# A Markdown link to a section: [text](path#anchor), path relative to the linking file, or
# empty for its own headings; other schemes (https://...) are not ours to check.
LINK = re.compile(r"\]\((?!\w+://)([^()\s#]*)#([^()\s]+)\)")
# A bare reference, in code and prose: README#anchor, README.md#anchor, docs/x.md#anchor
BARE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*(?:README|[\w.-]+\.md))#([\w-]+)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
HTML_ID = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text of links and code, lowercased, punctuation
    dropped (letters, digits, '_', '-' and spaces stay), spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(md: Path) -> Set[str]:
    """Every anchor of a Markdown file: its headings outside code fences (a repeated one also
    as -1, -2, ... as GitHub numbers them) and explicit <a name/id> targets."""
    found, seen, fence = set(), {}, None
    for line in md.read_text().splitlines():
        marker = re.match(r"\s*(```|~~~)", line)
        if marker:
            fence = None if fence == marker.group(1) else (fence or marker.group(1))
            continue
        if fence:
            continue
        found.update(HTML_ID.findall(line))
        m = HEADING.match(line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            found.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return found


def scanned_files(root: Path) -> Iterable[Path]:
    for name in SCANNED:
        top = root / name
        for path in sorted(top.rglob("*")) if top.is_dir() else [top]:
            rel = path.relative_to(root).as_posix()
            if (path.is_file() and path.suffix in SUFFIXES
                    and not any(s in rel + "/" for s in SKIPPED)):
                yield path


def broken_references(root: Path) -> List[str]:
    """'file:line: target#anchor (why)' for every section reference under root that does not
    resolve: links relative to the linking file, bare references to the root (or, in Markdown,
    to the file's own folder)."""
    cache: dict = {}
    problems = []
    for path in scanned_files(root):
        text = path.read_text(errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            links = list(LINK.finditer(line)) if path.suffix == ".md" else []
            refs = [(m.group(1) or path.name, m.group(2), [path.parent]) for m in links]
            bases = [root, path.parent] if path.suffix == ".md" else [root]
            refs += [(m.group(1), m.group(2), bases) for m in BARE.finditer(line)
                     if not any(k.start() <= m.start() < k.end() for k in links)]
            for target, anchor, dirs in refs:
                if target.split("/")[-1] == "README":
                    target += ".md"
                if not target.endswith(".md"):
                    continue  # a link to a code file's line (#L10) or a page elsewhere
                where = f"{path.relative_to(root)}:{lineno}: {target}#{anchor}"
                files = [(d / target).resolve() for d in dirs if (d / target).is_file()]
                if not files:
                    problems.append(f"{where} (no such file)")
                    continue
                if not any(anchor in cache.setdefault(f, anchors(f)) for f in files):
                    problems.append(f"{where} (no such heading in {files[0].relative_to(root)})")
    return problems


def test_section_references_resolve():
    problems = broken_references(ROOT)
    assert not problems, "section references that do not resolve:\n" + "\n".join(problems)


def test_a_broken_reference_is_found(tmp_path):
    """The check itself: a made-up anchor, a missing file and a stale link are reported, with
    GitHub's anchors (punctuation dropped, repeated headings numbered) accepted."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n## Install & run: `make`\n## Notes\n## Notes\n```\n# not a heading\n```\n")
    (tmp_path / "docs" / "a.md").write_text(
        "[ok](../README.md#install--run-make) [ok](../README.md#notes-1) [ok](#section)\n"
        "## Section\n[stale](../README.md#not-a-heading) [gone](b.md#x) [own](#nowhere)\n")
    (tmp_path / "snn_sweep").mkdir()
    (tmp_path / "snn_sweep" / "m.py").write_text(
        "# see README.md#notes and README#top, not README.md#made-up-anchor\n"
        "# nor (docs/a.md#section-2) or docs/readme.md#top\n")
    assert sorted(broken_references(tmp_path)) == sorted([
        "docs/a.md:3: ../README.md#not-a-heading (no such heading in README.md)",
        "docs/a.md:3: b.md#x (no such file)",
        "docs/a.md:3: a.md#nowhere (no such heading in docs/a.md)",
        "snn_sweep/m.py:1: README.md#made-up-anchor (no such heading in README.md)",
        "snn_sweep/m.py:2: docs/a.md#section-2 (no such heading in docs/a.md)",
        "snn_sweep/m.py:2: docs/readme.md#top (no such file)"])
    assert slug("Launchers: jobs side by side, and SLURM") == \
        "launchers-jobs-side-by-side-and-slurm"


def layout() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Layout", 1)[1].split("```", 2)[1]


def test_layout_names_every_module_and_script():
    section = layout()
    named = set(re.findall(r"[\w.]+\.py|[\w]+/", section))
    package = ROOT / "snn_sweep"
    wanted = {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
    wanted |= {f"{p.name}/" for p in package.iterdir()
               if p.is_dir() and (p / "__init__.py").exists() and p.name != "conf"}
    wanted |= {p.name for p in (ROOT / "scripts").glob("*.py")}
    # the packages beside snn_sweep: the bench (not installed)
    wanted |= {f"{p.name}/" for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(w for w in wanted if w not in named)
    assert not missing, f"README's layout does not name {missing}"
    for name in re.findall(r"^  ([\w]+\.py)\b", section, re.M):
        assert (package / name).exists(), f"README's layout names {name}, which is not there"
