"""scripts/wall_time.py keeps one row per make target in its table."""
import importlib.util
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("wall_time", ROOT / "scripts" / "wall_time.py")
wall_time = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wall_time)


def test_a_target_run_again_replaces_its_row(tmp_path, monkeypatch):
    table = tmp_path / "results" / "wall_time.md"
    monkeypatch.setattr(wall_time, "TABLE", table)
    now = int(time.time())
    wall_time.main(["tune-recipes", str(now - 90 * 60)])
    wall_time.main(["comparison", str(now - 30 * 60)])
    wall_time.main(["comparison", str(now - 45 * 60)])
    rows = table.read_text().splitlines()[2:]
    assert [r.split("|")[1].strip() for r in rows] == ["tune-recipes", "comparison"]
    minutes = [float(r.split("|")[3]) for r in rows]
    assert 90 <= minutes[0] < 91 and 45 <= minutes[1] < 46


@pytest.mark.parametrize("argv", [[], ["comparison"], ["comparison", "yesterday"]])
def test_bad_arguments_say_how_to_call_it(argv):
    with pytest.raises(SystemExit, match="wall_time.py TARGET START"):
        wall_time.main(argv)
