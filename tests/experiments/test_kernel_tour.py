import json

from experiments import kernel_tour
from experiments.records import jsonable
from experiments.runner import run_study


def test_kernel_tour_writes_results_and_redraws_from_them(tmp_path):
    res = run_study("kernel_tour", overrides=["width=16", "n_train=24", "n_test=24", "steps=10",
                                              "n_snapshots=2"], out=tmp_path, progress=False)
    (run_dir,) = (tmp_path / "kernel_tour").iterdir()
    assert sorted(res["figures"]) == ["alignment.png", "kernels.png", "spectrum.png"]
    for name in res["figures"]:
        assert (run_dir / name).stat().st_size > 10_000
    hist = res["metrics"]["history"]
    assert hist["train_loss"][-1] < hist["train_loss"][0]  # GD at half the max rate descends
    assert abs(hist["kernel_distance"][0]) < 1e-12 < hist["kernel_distance"][-1]
    assert all(-1 <= a <= 1 for a in hist["alignment"])
    cos = res["metrics"]["cosine_init"]
    assert all(abs(row[i] - 1) < 1e-3 for i, row in enumerate(cos))   # unit diagonal
    plain = json.loads(json.dumps(jsonable(res)))
    assert set(kernel_tour.figures(plain)) == {"spectrum", "alignment", "kernels"}
