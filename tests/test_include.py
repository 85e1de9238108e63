"""scripts/include.py: README blocks are copied from generated files, never typed."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "include.py"


def run(md: Path):
    return subprocess.run([sys.executable, str(SCRIPT), str(md)], capture_output=True, text=True)


def test_fills_blocks_and_is_idempotent(tmp_path):
    (tmp_path / "t.md").write_text("| a |\n|---|\n| 1 |\n")
    md = tmp_path / "README.md"
    md.write_text("intro\n<!-- include t.md -->\nold\n<!-- end include -->\nend\n")
    assert run(md).returncode == 0
    want = "intro\n<!-- include t.md -->\n| a |\n|---|\n| 1 |\n<!-- end include -->\nend\n"
    assert md.read_text() == want
    assert run(md).returncode == 0 and md.read_text() == want


def test_missing_file_is_one_line_and_leaves_readme(tmp_path):
    md = tmp_path / "README.md"
    text = "<!-- include nope/summary.md -->\nold\n<!-- end include -->\n"
    md.write_text(text)
    out = run(md)
    assert out.returncode == 1
    assert "nope/summary.md" in out.stderr and "Traceback" not in out.stderr
    assert md.read_text() == text


def test_code_file_comes_in_fenced(tmp_path):
    (tmp_path / "net.py").write_text("import torch\n")
    md = tmp_path / "README.md"
    md.write_text("<!-- include net.py -->\n<!-- end include -->\n")
    assert run(md).returncode == 0
    assert md.read_text() == "<!-- include net.py -->\n```python\nimport torch\n```\n" \
        "<!-- end include -->\n"
    assert run(md).returncode == 0 and md.read_text().count("```python") == 1  # idempotent
