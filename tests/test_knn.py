import json

import pytest
import torch

from stpl.analysis.knn import knn_report, same_class_share
from stpl.cli import main


def test_same_class_share_by_hand():
    # two tight clusters on a line; pixel 4 (class 0) sits inside the class-1 cluster
    features = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99], [0.07, 0.998]])
    features = torch.nn.functional.normalize(features, dim=1)
    labels = torch.tensor([0, 0, 1, 1, 0])
    shares = same_class_share(features, labels, k=1)
    # nearest neighbours: 0<->1 (same), 2 -> 4 (other), 3 -> 4 (other), 4 -> 2 or 3 (other): pixel 4's two
    # similarities tie within 3e-5, but both neighbours are class 1, so no rounding can change a share
    assert shares.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    report = knn_report(features, labels, k=1, class_names=["a", "b", "c"])
    assert report["overall"] == pytest.approx(40.0)
    assert report["per_class"] == {"a": pytest.approx(100 * 2 / 3), "b": 0.0, "c": None}
    with pytest.raises(ValueError, match="more than k"):
        same_class_share(features, labels, k=5)


def test_analyze_knn_command(tmp_path, toy_settings):
    sets = [arg for s in toy_settings for arg in ("--set", s)]
    assert main(["train-source", "--out", str(tmp_path / "source"), *sets]) == 0
    source = tmp_path / "source" / "model.safetensors"
    assert main(["adapt", "--source-ckpt", str(source), "--out", str(tmp_path / "stpl"), *sets]) == 0
    out = tmp_path / "knn"
    args = ["analyze", "knn", "--ckpt", str(source), "--ckpt", str(tmp_path / "stpl" / "model.safetensors"),
            "--name", "source", "--name", "stpl", "--k", "3", "--out", str(out), *sets]  # fmt: skip
    assert main(args) == 0
    result = json.loads((out / "knn.json").read_text())
    assert [c["name"] for c in result["checkpoints"]] == ["source", "stpl"] and result["k"] == 3
    for entry in result["checkpoints"]:
        assert 0.0 <= entry["overall"] <= 100.0 and entry["pixels"] > 3
    assert (out / "knn.png").stat().st_size > 1000
