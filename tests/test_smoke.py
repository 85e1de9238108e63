import json

from snn_sweep.train import train


def test_default_trains_and_writes_files(make_cfg, tmp_path):
    cfg = make_cfg("trainer.epochs=2")
    obj = train(cfg, str(tmp_path))
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["status"] == "completed" and obj == res["val_acc"]
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3
