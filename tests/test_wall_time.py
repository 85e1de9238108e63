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
    rows = table.read_text().splitlines()[2:4]
    assert [r.split("|")[1].strip() for r in rows] == ["tune-recipes", "comparison"]
    minutes = [float(r.split("|")[3]) for r in rows]
    assert 90 <= minutes[0] < 91 and 45 <= minutes[1] < 46


def test_the_pipeline_is_summed_once_every_target_has_a_row(tmp_path, monkeypatch):
    table = tmp_path / "wall_time.md"
    monkeypatch.setattr(wall_time, "TABLE", table)
    now = int(time.time())
    monkeypatch.setattr(wall_time.time, "time", lambda: float(now))  # whole minutes below
    wall_time.main(["tune-recipes", str(now - 60 * 60)])
    wall_time.main(["comparison", str(now - 100 * 60)])
    assert table.read_text().splitlines()[-1].endswith("not measured yet (no row for "
                                                       "augment-budget).")
    wall_time.main(["augment-budget", str(now - 30 * 60)])
    last = table.read_text().splitlines()[-1]
    assert " 190.0 min against a bound of 180 min: MISSED." in last
    wall_time.main(["augment-budget", str(now - 10 * 60)])  # its row replaced, one summary
    text = table.read_text()
    assert text.count("The pipeline") == 1 and " 170.0 min " in text and text.endswith("met.\n")
    assert len([r for r in text.splitlines() if r.startswith("| ")]) == 1 + 3  # header, rows


@pytest.mark.parametrize("argv", [[], ["comparison"], ["comparison", "yesterday"]])
def test_bad_arguments_say_how_to_call_it(argv):
    with pytest.raises(SystemExit, match="wall_time.py TARGET START"):
        wall_time.main(argv)
