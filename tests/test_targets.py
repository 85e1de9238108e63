"""scripts/targets.py sets each recipe's test accuracy beside its target."""
import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("targets", ROOT / "scripts" / "targets.py")
targets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(targets)


def test_each_recipe_met_or_missed(tmp_path):
    pd.DataFrame({"recipe": ["ann", "csnn_bn", "csnn"], "test_acc_mean": [0.9851, 0.9949, 0.99],
                  "test_acc_std": [0.001, 0.0005, 0.001], "test_acc_count": [3, 3, 3]}
                 ).to_csv(tmp_path / "summary.csv", index=False)
    assert targets.main([str(tmp_path)]) == 0
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in (tmp_path / "targets.md").read_text().splitlines()[2:]}
    assert set(rows) == {"ann", "csnn_bn", "csnn"}
    assert rows["ann"][:4] == ["0.9851 ± 0.0010", "3", "0.985", "met"]
    assert rows["csnn_bn"][3] == "MISSED"  # 0.9949 < 0.995
    assert rows["csnn"][2:4] == ["-", "-"]  # the tutorial net has no target


def test_a_summary_without_recipes_says_what_it_needs(tmp_path):
    pd.DataFrame({"model": ["snn"], "test_acc_mean": [0.9]}).to_csv(tmp_path / "summary.csv")
    with pytest.raises(SystemExit, match="no column recipe, test_acc_count, test_acc_std"):
        targets.main([str(tmp_path)])
    with pytest.raises(SystemExit, match="no such file"):
        targets.main([str(tmp_path / "nothing")])
