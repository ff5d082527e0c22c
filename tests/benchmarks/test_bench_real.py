"""Smoke test of benchmarks/bench_real.py at a tiny size: the worker's plain-JAX and library
kernels agree, and the report renders every section."""
import numpy as np
import pytest

from benchmarks import bench_real


@pytest.mark.slow  # compiles a ResNet-18 graph twice (about 20 s of CPU)
def test_worker_kernels_agree_and_report_renders(tmp_path):
    rows = {}
    for impl in ("ntk", "plain"):
        rows[impl] = bench_real._worker({"case": "pntk", "impl": impl, "n": 3, "width": 2,
                                         "repeats": 1, "save": str(tmp_path / f"{impl}.npy")})
        assert rows[impl]["output_shape"] == [3, 3] and rows[impl]["finite"]
        assert rows[impl]["n_params"] == bench_real._resnet_params(2)
    a, b = np.load(tmp_path / "ntk.npy"), np.load(tmp_path / "plain.npy")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    results = {"trace_entk": [], "pntk": list(rows.values()), "projected": [],
               "peer": [{"n": 3, "k": 8, "proj_type": "rademacher", "error": "skipped"}],
               "gpt_full": [], "ratios": [{"case": "pntk", "n": 3, "time_ours_over_plain": 1.0,
                                           "peak_ours_over_plain": 1.0, "max_rel_diff": 0.0}],
               "environment": {"cpus": 2, "jax": "x", "quick": True, "resnet18_width": 2}}
    md = bench_real._markdown(results)
    for title in ("Trace eNTK", "pNTK", "Projected", "TRAK", "GPT", "Ratios"):
        assert title in md
    assert md.count("| 3 | ntk |") == 1 and "skipped" in md
