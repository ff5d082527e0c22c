"""Smoke test of benchmarks/bench_gpu.py on the CPU: ``--allow-cpu`` runs every case at tiny
sizes and writes a well-formed report; without it the run measures nothing, says why and
exits cleanly."""
import json

import jax
import numpy as np
import pytest

from benchmarks import __main__ as bench_main
from benchmarks import bench_gpu


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="the no-GPU path needs a CPU")
def test_without_gpu_writes_a_note_and_exits_cleanly(tmp_path):
    bench_main.main(["--gpu", "--out", str(tmp_path)])  # must not raise or sys.exit(!= 0)
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert report["rows"] == [] and "no GPU" in report["note"]
    assert "no GPU" in (tmp_path / "bench_gpu.md").read_text()


@pytest.mark.slow  # about 30 s of CPU: every GPU case compiled at tiny size
def test_allow_cpu_runs_every_case_and_writes_tables(tmp_path):
    bench_main.main(["--gpu", "--allow-cpu", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    expected = [c["case"] for c in bench_gpu.cases(tiny=True)]
    assert [r["case"] for r in report["rows"]] == expected
    assert len(expected) == 8 + 4 + 2
    errors = {r["case"]: r["error"] for r in report["rows"] if "error" in r}
    assert not errors
    peaks = report["matmul_peak_flops_per_s"]
    assert peaks["default"] > 0 and peaks["highest"] > 0
    for row in report["rows"]:
        assert len(row["times"]) == 3 and row["seconds"] == sorted(row["times"])[1]
        assert row["compile_seconds"] > 0
        if row["flops"] is not None:
            rate = row["flops"] / row["seconds"] / 1e9
            assert row["gflops_per_s"] == pytest.approx(rate)
            assert row["fraction_of_highest_peak"] == pytest.approx(
                rate * 1e9 / peaks["highest"])

    # Every implementation computes the same FCN kernel: their checksums agree.
    fcn = [r for r in report["rows"] if r["family"] == "fcn"]
    n, o = fcn[0]["n"], bench_gpu.sizes(True)["fcn"]["out"]
    assert all(r["shape"] == [n, n, o, o] for r in fcn)
    sums = np.array([r["checksum"] for r in fcn])
    np.testing.assert_allclose(sums, np.broadcast_to(sums[0], sums.shape), rtol=1e-4)
    # Projected features (N, k) and the NNGP / NTK of Myrtle (N, N).
    by_name = {r["case"]: r for r in report["rows"]}
    size = bench_gpu.sizes(True)
    assert by_name[expected[1]]["shape"] == [size["resnet"]["n"]] * 2
    assert all(r["shape"] == [size["resnet"]["n"], size["resnet"]["dim"]]
               for r in report["rows"] if "projected" in r["case"])
    assert all(r["shape"] == [size["myrtle"]["n"]] * 2
               for r in report["rows"] if r["family"] == "myrtle")

    md = (tmp_path / "bench_gpu.md").read_text()
    header = ("| case | N | seconds | compile seconds | GFLOP/s | fraction of matmul peak "
              "(default / highest) | device |")
    assert header in md and report["environment"]["device"] in md
    table = md[md.index(header):].splitlines()[2:2 + len(expected)]
    assert all(line.count("|") == 8 for line in table)
