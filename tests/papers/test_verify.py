"""``ntk-lab verify PAPER --quick`` for every paper: all claims hold, exit status 0."""
import json

import pytest

from experiments.__main__ import main
from papers import PAPERS, load_paper


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_verify_quick(paper, tmp_path, capsys):
    rc = main(["verify", paper, "--quick", "--json", "--no-progress", "--out", str(tmp_path)])
    report = json.loads(capsys.readouterr().out)
    table = {c["id"]: (c["measured"], c["holds"]) for c in report["claims"]}
    assert rc == 0, f"claims failed: {table}"
    assert report["all_hold"] and len(report["claims"]) >= 3
    for c in report["claims"]:
        assert isinstance(c["measured"], (int, float)), c   # claims are numbers
    mod = load_paper(paper)
    assert mod.CITATION and mod.STUDY in report["runs"]["main"]


def test_verify_table_and_failing_exit_status(tmp_path, capsys, monkeypatch):
    """A claim that does not hold is shown as NO and makes the exit status 1."""
    mod = load_paper("woodworth2020kernel")
    real = mod.claims

    def one_fails(results):
        out = real(results)
        out[0].holds = False
        return out
    monkeypatch.setattr(mod, "claims", one_fails)
    rc = main(["verify", "woodworth2020kernel", "--quick", "--no-progress",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "| q_alpha |" in out and "| NO |" in out and "3/4 claims hold" in out


@pytest.mark.slow
@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_verify_full(paper, tmp_path, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-size reproduction: select it with -m slow")
    assert main(["verify", paper, "--no-progress", "--out", str(tmp_path)]) == 0
