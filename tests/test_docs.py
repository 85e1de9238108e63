"""The README's layout section names every module, package and script of the tree, and nothing
that is not there."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
    missing = sorted(w for w in wanted if w not in named)
    assert not missing, f"README's layout does not name {missing}"
    for name in re.findall(r"^  ([\w]+\.py)\b", section, re.M):
        assert (package / name).exists(), f"README's layout names {name}, which is not there"
