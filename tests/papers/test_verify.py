"""``ntk-lab verify PAPER --quick`` for every paper: all claims hold, exit status 0, and the
claims report shows the paper's claims and figures (every figure a decodable image; the page
itself is loaded in a real browser once, on one paper)."""
import dataclasses
import html
import json
import re
import shutil

import pytest
from PIL import Image

from experiments import claims as claimlib
from experiments.registry import load_study
from ntk_lab.cli import main
from ntk_lab.report import write_report
from papers import papers
from tests.browser import rendered_dom


def _paper_section(dom: str, paper: str) -> str:
    match = re.search(rf'<section class="paper" id="{paper}">(.*?)</section>', dom, re.S)
    assert match, f"no section for {paper}"
    return match.group(1)


def _claim_rows(page_html: str, paper: str):
    return re.findall(r'<tr class="claim [a-z]+" data-id="([^"]+)" data-holds="(true|false)" '
                      r'data-reported="(true|false)"', _paper_section(page_html, paper))


def _verify_quick(paper, out, capsys):
    rc = main(["verify", paper, "--quick", "--json", "--no-progress", "--out", str(out)])
    report = json.loads(capsys.readouterr().out)
    table = {c["id"]: (c["measured"], c["holds"]) for c in report["claims"]}
    assert rc == 0, f"claims failed: {table}"
    assert report["all_hold"] and len(report["claims"]) >= 2
    assert set(report["runs"]) == set(papers()[paper]["studies"])
    for c in report["claims"]:
        assert c["run"] in report["runs"].values() and c["expected"] and c["text"]
    return report


# The thirteen costliest quick verifications (9-18 s each) run under ``make test-all`` (the
# suite must stay under 10 minutes on 2 cores); their studies' pieces, claims and figures are
# tested by default in tests/experiments (one test module per study) and
# tests/limits/test_coord_check.py; the other eighteen papers verify by default.
HEAVY_PAPERS = ("malladi2023kernel", "yang2021tp5", "he2020ensembles", "guo2024lpntk",
                "engel2024surrogates", "jacot2018ntk", "hemachandra2023evgp",
                "kumar2023grokking", "mok2022ntknas", "pan2025idinit", "mohamadi2023pntk",
                "radhakrishnan2023wide", "zhang2019fixup")


@pytest.mark.parametrize("paper", [pytest.param(p, marks=pytest.mark.slow)
                                   if p in HEAVY_PAPERS else p for p in papers()])
def test_verify_quick_and_its_report_page(paper, tmp_path, capsys):
    report = _verify_quick(paper, tmp_path, capsys)
    page = write_report(tmp_path / "report", results=tmp_path)
    text = page.read_text()
    srcs = [html.unescape(s) for s in re.findall(r'<img src="([^"]+)"', text)]
    assert srcs, f"{paper}: the report shows no figure"
    for src in srcs:
        with Image.open(page.parent / src) as img:   # what a browser must decode
            img.verify()
            assert img.size[0] > 0 and img.size[1] > 0, src
    rows = _claim_rows(text, paper)
    assert [r[0] for r in rows] == [c["id"] for c in report["claims"]]
    assert all(h == "true" for _, h, reported in rows if reported == "false")


def test_report_page_in_a_browser_counts_its_figures_and_names_a_missing_one(tmp_path, capsys):
    """The page as a browser runs it: every figure decoded, the claims in order; with one
    figure file removed the page's own check reports it as broken."""
    paper = "levi2023linear"
    report = _verify_quick(paper, tmp_path, capsys)
    page = write_report(tmp_path / "report", results=tmp_path)
    dom = rendered_dom(page)
    body = re.search(r"<body([^>]*)>", dom).group(1)
    n_img = len(re.findall(r"<img ", dom))
    assert n_img >= 1
    assert f'data-figures-loaded="{n_img}"' in body and 'data-figures-broken="0"' in body, body
    assert [r[0] for r in _claim_rows(dom, paper)] == [c["id"] for c in report["claims"]]

    first = html.unescape(re.search(r'<img src="([^"]+)"', page.read_text()).group(1))
    broken = tmp_path / "broken"
    shutil.copytree(page.parent, broken)
    (broken / first).unlink()
    body = re.search(r"<body([^>]*)>", rendered_dom(broken / page.name)).group(1)
    assert f'data-figures-loaded="{n_img - 1}"' in body and 'data-figures-broken="1"' in body


def test_a_changed_threshold_is_rechecked_from_results_without_running(tmp_path, capsys,
                                                                        monkeypatch):
    """Tighten one bound after the run: --from-results re-checks the stored metrics (exit 1,
    the claim shown as NO) and trains nothing; the run id does not change."""
    paper = "levi2023linear"
    assert main(["verify", paper, "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    runs = sorted(p.name for p in (tmp_path / "linear_grokking").iterdir())
    module = load_study("linear_grokking")
    first = module.CLAIMS[0]
    measured = claimlib.check([first], json.loads(
        (tmp_path / "linear_grokking" / runs[0] / "results.json").read_text())["metrics"])[0]
    value = measured["measured"]
    tight = claimlib.less(-abs(value) - 1.0) if isinstance(value, float) else claimlib.greater(2.0)
    monkeypatch.setattr(module, "CLAIMS",
                        (dataclasses.replace(first, bound=tight), *module.CLAIMS[1:]))
    monkeypatch.setattr(module, "run", lambda cfg, ctx: pytest.fail("--from-results trained"))
    rc = main(["verify", paper, "--quick", "--from-results", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"| {first.id} |" in out and "| NO |" in out and "re-checked on stored runs" in out
    assert sorted(p.name for p in (tmp_path / "linear_grokking").iterdir()) == runs


def test_from_results_without_a_stored_run_is_a_clear_error(tmp_path, capsys):
    rc = main(["verify", "chizat2019lazy", "--quick", "--from-results",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--from-results" in err and "lazy_scale" in err and "verify" in err


@pytest.mark.slow
@pytest.mark.parametrize("paper", list(papers()))
def test_verify_full(paper, tmp_path, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-size reproduction: select it with -m slow")
    assert main(["verify", paper, "--no-progress", "--out", str(tmp_path)]) == 0
