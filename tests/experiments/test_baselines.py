import csv
import json

import numpy as np

from experiments import baselines
from experiments.records import jsonable
from experiments.runner import run_study


def test_baselines_table_on_tiny_digits(tmp_path):
    res = run_study("baselines", overrides=["datasets=digits", "width=32", "n_train=60",
                                            "n_test=60", "steps=20", "proj_dim=64"],
                    out=tmp_path, progress=False)
    (run_dir,) = (tmp_path / "baselines").iterdir()
    with open(run_dir / "baselines.csv") as f:
        rows = list(csv.DictReader(f))
    methods = {r["method"] for r in rows}
    assert {"nngp", "ntk"} <= methods and len(methods) >= 6
    accs = [float(r["test_accuracy"]) for r in rows]
    assert all(0.0 <= a <= 1.0 for a in accs)
    # kernel regression on digits is far above chance (0.1) even at this size
    assert np.median(accs) > 0.5
    assert (run_dir / "baselines.md").read_text().count("|") > 10
    # the claims measure one gap per data set run; the figure redraws from the JSON
    assert [c["id"] for c in res["claims"]] == ["pntk_matches_entk", "projection_close"]
    by = {r["method"]: float(r["test_accuracy"]) for r in rows}
    assert res["claims"][0]["measured"] == [abs(by["pntk"] - by["entk"])]
    plain = json.loads(json.dumps(jsonable(res)))
    assert set(baselines.figures(plain)) == {"baselines"}
    assert (run_dir / "baselines.png").stat().st_size > 10_000
