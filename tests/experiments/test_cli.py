"""The ntk-lab command: list, run, bad input (one clear line, exit 2, nothing written)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ntk_lab.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_list_names_studies_and_papers(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("grokking_lazy_rich", "linear_grokking", "lazy_scale", "diagonal_linear",
                 "kumar2023grokking", "levi2023linear", "chizat2019lazy", "woodworth2020kernel"):
        assert name in out


@pytest.mark.parametrize("argv, words", [
    (["run", "no_such_study"], ["unknown study 'no_such_study'", "grokking_lazy_rich"]),
    (["run", "grokking_lazy_rich", "--quick", "--set", "bogus=1"], ["--set bogus=1", "bogus"]),
    (["run", "grokking_lazy_rich", "--quick", "--set", "width=wide"], ["width", "int"]),
    (["run", "grokking_lazy_rich", "--quick", "--set", "n_steps=130"], ["multiple"]),
    (["verify", "no_such_paper"], ["unknown paper 'no_such_paper'"]),
    (["run", "grokking_lazy_rich", "--quick", "--set", "width=-5"], ["width=-5", ">= 1"]),
    (["run", "grokking_lazy_rich", "--quick", "--set", "width=0"], ["width=0", ">= 1"]),
    (["run", "grokking_lazy_rich", "--quick", "--set", "eta0=nan"], ["eta0", "finite"]),
    (["run", "grokking_lazy_rich", "--quick", "--run-id", "../../x"], ["--run-id", ".."]),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "out")] if argv[0] != "verify"
                else argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ntk-lab: error:")
    for w in words:
        assert w in err
    assert not (tmp_path / "out").exists()   # nothing half-written


def test_plot_of_an_unfinished_run_is_one_line(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "no_run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "RUN_DIR" in err and "results.json" in err


def test_a_bug_inside_a_study_keeps_its_traceback(tmp_path, monkeypatch):
    """A ValueError raised by a study's own code is not mistaken for bad input (exit 2)."""
    from experiments.registry import load_study
    from experiments.runner import StudyFailed

    def broken(cfg, ctx):
        raise ValueError("a bug")
    monkeypatch.setattr(load_study("lazy_scale"), "run", broken)
    with pytest.raises(StudyFailed, match="lazy_scale.*ValueError: a bug"):
        main(["run", "lazy_scale", "--quick", "--no-progress", "--out", str(tmp_path)])


def test_unwritable_out_folder(tmp_path, capsys, tiny_grokking):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc = main(["run", "grokking_lazy_rich", "--quick", "--out", str(blocker / "res")]
              + sum((["--set", s] for s in tiny_grokking), []))
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "cannot write" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_run_writes_results_in_design_schema(tmp_path, capsys, tiny_grokking):
    rc = main(["run", "grokking_lazy_rich", "--quick", "--seed", "3", "--out", str(tmp_path),
               "--no-progress"] + sum((["--set", s] for s in tiny_grokking), []))
    assert rc == 0
    (run_dir,) = (tmp_path / "grokking_lazy_rich").iterdir()
    assert run_dir.name.startswith("quick-seed3-")
    res = json.loads((run_dir / "results.json").read_text())
    assert {"config", "metrics", "claims", "environment", "elapsed_s"} <= set(res)
    assert res["config"]["seed"] == 3 and res["config"]["width"] == 32
    assert res["environment"]["seed"] == 3 and res["environment"]["versions"]["jax"]
    for c in res["claims"]:
        assert {"id", "text", "expected", "measured", "holds"} <= set(c)
    for fig in res["figures"]:
        assert (run_dir / fig).stat().st_size > 1000
    assert json.loads((run_dir / "config.json").read_text())["config"] == res["config"]
    assert "| id | claim |" in capsys.readouterr().out


def test_python_dash_m_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ntk_lab", "run", "nope"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    from experiments.registry import study_names
    assert out.stderr.strip().splitlines() == [
        "ntk-lab: error: STUDY: unknown study 'nope'; known studies: "
        + ", ".join(study_names())]


def test_claims_table_escapes_pipes():
    """A claim text with |x| (a norm) stays one Markdown row of five cells."""
    from ntk_lab.cli import claims_table
    row = claims_table([{"id": "a", "text": "|w_T - w_0|/|w_0| falls", "expected": "< |1|",
                         "measured": 0.5, "holds": True}]).splitlines()[-1]
    cells = [c for c in row.replace("\\|", "").split("|")]
    assert len(cells) == 7 and "\\|w_T - w_0\\|" in row


def test_demo_tours_registered_studies_of_every_room():
    from experiments.registry import study_names
    from ntk_lab.cli import DEMO_STUDIES
    assert set(DEMO_STUDIES) <= set(study_names()) and len(set(DEMO_STUDIES)) == len(DEMO_STUDIES)
