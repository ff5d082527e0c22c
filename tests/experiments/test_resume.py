"""A run interrupted mid-way (exception hook, or SIGKILL) resumes to identical results."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.loop import RunInterrupted
from experiments.runner import run_study

REPO = Path(__file__).resolve().parents[2]


def _strip(res):
    return {k: res[k] for k in ("config", "metrics", "claims")}


def test_interrupted_run_resumes_identically(tmp_path, tiny_grokking):
    full = run_study("grokking_lazy_rich", overrides=tiny_grokking, out=tmp_path / "a",
                     progress=False)
    with pytest.raises(RunInterrupted):   # dies inside the second alpha's training
        run_study("grokking_lazy_rich", overrides=tiny_grokking, out=tmp_path / "b",
                  progress=False, interrupt_after_steps=600)
    run_dir = tmp_path / "b" / "grokking_lazy_rich" / full["run_id"]
    assert not (run_dir / "results.json").exists()
    assert len(list((run_dir / "checkpoints").glob("*.pkl"))) == 2
    resumed = run_study("grokking_lazy_rich", overrides=tiny_grokking, out=tmp_path / "b",
                        progress=False)
    assert resumed["resumed_tasks"] == ["alpha=0.5", "alpha=32"]
    assert _strip(resumed) == _strip(full)


def test_sigkill_then_rerun_matches_uninterrupted(tmp_path, tiny_grokking):
    over = [s for s in tiny_grokking if not s.startswith("n_steps")] + ["n_steps=3000"]
    cmd = [sys.executable, "-m", "ntk_lab", "run", "grokking_lazy_rich", "--quick",
           "--out", str(tmp_path), "--no-progress"] + sum((["--set", s] for s in over), [])
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt_glob = "grokking_lazy_rich/*/checkpoints/*.pkl"
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(ckpt_glob)) and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (run_dir,) = (tmp_path / "grokking_lazy_rich").iterdir()
    assert not (run_dir / "results.json").exists(), "the run finished before the kill"
    # the rerun in this process (the command line's run is run_study; the killed process and
    # its half-written checkpoints are what is under test)
    rerun = run_study("grokking_lazy_rich", overrides=over, out=tmp_path, progress=False)
    assert rerun["run_id"] == run_dir.name
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["resumed_tasks"]        # it did pick up the checkpoint
    full = run_study("grokking_lazy_rich", overrides=over, out=tmp_path / "ref",
                     progress=False)
    assert _strip(resumed) == _strip(full)
