"""The benchmark runs end to end (on tiny data: its timings mean nothing here; the targets are
checked by running it on full MNIST, never by a timed test)."""
import csv

import pytest
from conftest import make_dataset

from snn_sweep import bench


def test_bench_writes_ratios_and_verdicts(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", n_train=5400, n_test=300)  # > default val_size 5000
    out = tmp_path / "b" / "bench.csv"
    assert bench.main(["--data-root", str(root), "--cases", "rate10,direct10", "--batches", "2",
                       "--rounds", "1", "--eval-samples", "128", "--no-memory",
                       "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["case"] for r in rows] == ["rate10", "direct10"]
    for r in rows:
        for side in ("train", "eval"):
            ours, ref, ratio = (float(r[f"{side}_{k}"]) for k in ("ours", "ref", "ratio"))
            assert ours > 0 and ref > 0 and abs(ratio - ours / ref) < 0.01 * ratio + 0.01
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "| rate10 |" in md and "- target direct10 eval_ratio >= 3.0:" in md
    assert "target direct25" not in md  # verdicts only for the cases that ran


def test_bench_bad_data_root_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as info:
        bench.main(["--data-root", str(tmp_path / "nowhere"), "--quick", "--no-memory"])
    assert str(info.value).startswith(f"error: --data-root {tmp_path / 'nowhere'}: ")
