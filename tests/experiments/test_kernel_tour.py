import json
import os

from experiments import kernel_tour


def test_kernel_tour_writes_results_and_figures(tmp_path):
    cfg = kernel_tour.TourConfig(width=16, n_train=24, n_test=24, steps=10, n_snapshots=2)
    res = kernel_tour.main(str(tmp_path), config=cfg)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert set(on_disk) >= {"config", "metrics", "claims", "environment", "elapsed_s"}
    for name in on_disk["figures"]:
        assert os.path.getsize(tmp_path / name) > 10_000
    hist = res["metrics"]["history"]
    assert hist["train_loss"][-1] < hist["train_loss"][0]  # GD at half the max rate descends
    assert abs(hist["kernel_distance"][0]) < 1e-12 < hist["kernel_distance"][-1]
    assert all(-1 <= a <= 1 for a in hist["alignment"])
