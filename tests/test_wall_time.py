"""scripts/wall_time.py keeps one row per make target in its table, a killed and resumed
target's row the sum of its segments."""
import importlib.util
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("wall_time", ROOT / "scripts" / "wall_time.py")
wall_time = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wall_time)


@pytest.fixture
def clock(tmp_path, monkeypatch):
    """The table under tmp_path and a clock that moves only when told (whole minutes)."""
    monkeypatch.setattr(wall_time, "TABLE", tmp_path / "results" / "wall_time.md")
    now = [1_800_000_000]
    monkeypatch.setattr(wall_time.time, "time", lambda: float(now[0]))
    return now


def ran(clock, tmp_path, target, minutes):
    """TARGET started, ran MINUTES and recorded, as its make target does."""
    sweep_dir = tmp_path / "multirun" / target
    wall_time.main(["--start", str(sweep_dir)])
    clock[0] += minutes * 60
    wall_time.main([target, str(sweep_dir)])


def rows(table):
    return {r.split("|")[1].strip(): float(r.split("|")[3])
            for r in table.read_text().splitlines()[2:] if r.startswith("| ")}


def test_a_target_run_again_replaces_its_row(clock, tmp_path):
    ran(clock, tmp_path, "tune-recipes", 90)
    ran(clock, tmp_path, "comparison", 30)
    ran(clock, tmp_path, "comparison", 45)
    assert rows(wall_time.TABLE) == {"tune-recipes": 90.0, "comparison": 45.0}


def test_a_resumed_target_sums_its_segments_without_the_time_it_lay_killed(clock, tmp_path):
    sweep_dir = tmp_path / "multirun" / "comparison"
    wall_time.main(["--start", str(sweep_dir)])
    run = sweep_dir / "3" / "metrics.csv"  # the last epoch a run wrote before the kill
    run.parent.mkdir(parents=True)
    run.write_text("epoch\n1\n")
    os.utime(run, (clock[0] + 50 * 60, clock[0] + 50 * 60))
    clock[0] += 24 * 60 * 60  # resumed the next day
    wall_time.main(["--resume", str(sweep_dir)])
    clock[0] += 20 * 60
    wall_time.main(["--resume", str(sweep_dir)])  # killed before it wrote anything: adds 0
    clock[0] += 30 * 60
    wall_time.main(["comparison", str(sweep_dir)])
    assert rows(wall_time.TABLE) == {"comparison": 50.0 + 30.0}
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(1_800_000_000))
    assert f"| comparison | {started} | 80.0 |" in wall_time.TABLE.read_text()
    # a finished target resumed again (make results RESUME=1) adds only its new segment
    clock[0] += 60 * 60
    wall_time.main(["--resume", str(sweep_dir)])
    clock[0] += 2 * 60
    wall_time.main(["comparison", str(sweep_dir)])
    assert rows(wall_time.TABLE) == {"comparison": 82.0}


def test_the_pipeline_is_summed_once_every_target_has_a_row(clock, tmp_path):
    ran(clock, tmp_path, "tune-recipes", 60)
    ran(clock, tmp_path, "comparison", 100)
    assert wall_time.TABLE.read_text().splitlines()[-1].endswith(
        "not measured yet (no row for augment-budget).")
    ran(clock, tmp_path, "augment-budget", 30)
    last = wall_time.TABLE.read_text().splitlines()[-1]
    assert " 190.0 min against a bound of 180 min: MISSED." in last
    ran(clock, tmp_path, "augment-budget", 10)  # its row replaced, one summary
    text = wall_time.TABLE.read_text()
    assert text.count("The pipeline") == 1 and " 170.0 min " in text and text.endswith("met.\n")
    assert len([r for r in text.splitlines() if r.startswith("| ")]) == 1 + 3  # header, rows


def test_rows_over_the_bound_miss_it_before_the_last_target_has_run(clock, tmp_path):
    ran(clock, tmp_path, "comparison", 155)
    ran(clock, tmp_path, "augment-budget", 30)
    assert wall_time.TABLE.read_text().splitlines()[-1].endswith(
        "MISSED the bound of 180 min already: the rows it has sum to 185.0 min (no row yet "
        "for tune-recipes).")


def test_resuming_what_never_started_says_so(clock, tmp_path):
    with pytest.raises(SystemExit, match=r"comparison\.start: no such file: .* was never "
                                         r"started by its make target"):
        wall_time.main(["--resume", str(tmp_path / "comparison")])
    for text in ("yesterday\n", "", "1 2 3\n", "1\n2\n"):
        (tmp_path / "other.start").write_text(text)
        with pytest.raises(SystemExit, match=r"other\.start: not a wall-time record"):
            wall_time.main(["other", str(tmp_path / "other")])


@pytest.mark.parametrize("argv", [[], ["comparison"], ["--start", ""]])
def test_bad_arguments_say_how_to_call_it(argv):
    with pytest.raises(SystemExit, match="wall_time.py --start SWEEP_DIR"):
        wall_time.main(argv)


@pytest.mark.parametrize("target,sweep", [("tune-recipes", "recipes"),
                                          ("augment-budget", "augment_budget"),
                                          ("comparison", "comparison")])
def test_make_resume_continues_the_sweep_dir_and_its_record(target, sweep):
    """`make TARGET` starts afresh; with RESUME=1 it keeps the sweep dir, resumes its runs and
    its wall-time record, and records the row from the same dir (make -n: nothing runs)."""
    def commands(*extra):
        out = subprocess.run(["make", "-n", "-o", ".venv/.installed", target, "DATA=d", *extra],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return out.replace("\\\n", " ")

    dir_ = f"multirun/results/{sweep}"
    fresh, resumed = commands(), commands("RESUME=1")
    assert f"rm -rf {dir_} {dir_}.start" in fresh and f"wall_time.py --start {dir_}" in fresh
    assert "rm -rf" not in resumed and f"wall_time.py --resume {dir_}" in resumed
    for out in (fresh, resumed):
        assert f"wall_time.py {target} {dir_}\n" in out
    if target == "tune-recipes":  # the studies' max_trials does it (recipe.yaml)
        assert ">> multirun/results/recipes/" in resumed
    else:
        assert "trainer.resume=true" in resumed and "trainer.resume" not in fresh
