"""The claims report: one static HTML page (no server) of every paper, its claims and figures.

For each paper (:func:`papers.papers`), each of its studies' stored runs under ``results``
is found (the default full run, else the default quick run, else the newest finished run),
its claims are re-checked on the stored metrics with the thresholds in the code now, and
the page shows the claims table (expected, measured, holds, the run it came from), the
figures (copied next to the page, so the folder can be moved or served as is) and the
commands that rerun, re-check and redraw it. Papers and studies without a stored run are
listed with the command that makes one.
"""
from __future__ import annotations

import datetime
import html
import math
import shutil
from pathlib import Path

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2.2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; width: 100%; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.5em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
tr.holds td.verdict { color: #1a7f37; font-weight: 600; }
tr.fails td.verdict { color: #c62828; font-weight: 600; }
tr.reported td.verdict { color: #8a6d00; }
td.num { font-family: ui-monospace, monospace; white-space: nowrap; }
.citation { color: #555; font-style: italic; }
.missing { color: #8a6d00; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; font-size: 0.88em; }
#broken { display: none; background: #fdecea; padding: 0.5em; }
"""

# Counts the figures the browser could decode; a page with a missing figure says so.
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0, broken = [];
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
    else { broken.push(imgs[i].getAttribute('src')); }
  }
  document.body.setAttribute('data-figures-loaded', String(ok));
  document.body.setAttribute('data-figures-broken', String(broken.length));
  if (broken.length) {
    var note = document.getElementById('broken');
    note.textContent = broken.length + ' figure(s) did not load: ' + broken.join(', ');
    note.style.display = 'block';
  }
});
"""


def format_measured(x) -> str:
    """A measured value for a table cell: numbers to 4 significant digits, lists in brackets."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}" if math.isfinite(x) else str(x)
    if isinstance(x, list):
        return "[" + ", ".join(format_measured(v) for v in x) + "]"
    return str(x)


def finished_runs(results: Path, study: str) -> list[Path]:
    """Run folders of ``study`` under ``results`` that hold a ``results.json``."""
    folder = results / study
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if (p / "results.json").is_file()),
                  key=lambda p: (p / "results.json").stat().st_mtime)


def pick_run(results: Path, study: str) -> Path | None:
    """The default full run, else the default quick run, else the newest finished run."""
    from experiments.runner import default_run_id, make_config
    runs = finished_runs(results, study)
    if not runs:
        return None
    by_name = {p.name: p for p in runs}
    for quick in (False, True):
        _, cfg = make_config(study, quick=quick)
        name = default_run_id(cfg, quick=quick)
        if name in by_name:
            return by_name[name]
    return runs[-1]


def _study_section(study: str, results_dir: Path, out: Path, paper: str | None) -> tuple[str, list]:
    """HTML for one study's run and its re-checked claims; returns (html, claims)."""
    from experiments.registry import load_study
    from experiments.claims import verdict
    from experiments.runner import check_claims, read_results
    e = html.escape
    run = pick_run(results_dir, study)
    verify = f"ntk-lab verify {paper} --quick" if paper else f"ntk-lab run {study} --quick"
    if run is None:
        return (f'<h3>{e(study)}</h3><p class="missing">No stored run in {e(str(results_dir))}. '
                f'Make one with:</p><pre>{e(verify)} --out {e(str(results_dir))}</pre>', [])
    res = read_results(run)
    claims = check_claims(load_study(study), res)
    quick = res.get("quick", run.name.startswith("quick"))
    rows = []
    for c in claims:
        state = "reported" if c.get("reported") else ("holds" if c["holds"] else "fails")
        rows.append(
            f'<tr class="claim {state}" data-id="{e(c["id"])}" '
            f'data-holds="{str(bool(c["holds"])).lower()}" '
            f'data-reported="{str(bool(c.get("reported"))).lower()}"><td>{e(c["id"])}</td>'
            f'<td>{e(str(c["text"]))}</td><td class="num">{e(str(c["expected"]))}</td>'
            f'<td class="num">{e(format_measured(c["measured"]))}</td>'
            f'<td class="verdict">{e(verdict(c))}</td></tr>')
    table = ("<table><thead><tr><th>id</th><th>claim</th><th>expected</th><th>measured</th>"
             "<th>holds</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
             if rows else "<p>This study states no claims; it writes figures.</p>")
    figs = []
    for name in res.get("figures", []):
        src = run / name
        if not src.is_file():
            continue
        rel = Path("figures") / study / run.name / name
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / rel)
        figs.append(f'<figure><img src="{e(rel.as_posix())}" alt="{e(study)}: {e(name)}" '
                    f'loading="eager"><figcaption>{e(name)}</figcaption></figure>')
    seed = res.get("config", {}).get("seed")
    commands = [
        f"{verify if quick else verify.replace(' --quick', '')} --out {results_dir}",
        f"ntk-lab run {study}{' --quick' if quick else ''}"
        + (f" --seed {seed}" if seed is not None else "") + f" --out {results_dir}",
        f"ntk-lab plot {run}",
    ]
    if paper:
        commands.insert(1, f"ntk-lab verify {paper}{' --quick' if quick else ''} "
                           f"--from-results --out {results_dir}")
    elapsed = res.get("elapsed_s")
    meta = (f"run <code>{e(str(run))}</code> ({'quick' if quick else 'full'} config"
            + (f", {elapsed:.0f} s" if isinstance(elapsed, (int, float)) else "") + ")")
    body = (f"<h3>{e(study)}</h3><p>{meta}</p>{table}"
            + (f"<div>{''.join(figs)}</div>" if figs else "")
            + "<details><summary>Commands</summary><pre>"
            + e("\n".join(commands)) + "</pre></details>")
    return body, [{**c, "study": study, "run": str(run)} for c in claims]


def write_report(out="results/report", *, results="results") -> Path:
    """Write ``out/index.html`` (and ``out/figures/``) from the runs under ``results``;
    returns the page's path."""
    from experiments.registry import studies
    from papers import papers
    e = html.escape
    out, results_dir = Path(out), Path(results)
    if out.resolve() == results_dir.resolve():
        raise ValueError(f"--out {out}: must differ from --results {results_dir}")
    out.mkdir(parents=True, exist_ok=True)
    if (out / "figures").exists():
        shutil.rmtree(out / "figures")
    sections, summary, paper_of = [], [], {}
    for name, info in papers().items():
        parts, claims = [], []
        for study in info["studies"]:
            paper_of[study] = name
            body, checked = _study_section(study, results_dir, out, name)
            parts.append(body)
            claims += checked
        decisive = [c for c in claims if not c.get("reported")]
        n_rep = len(claims) - len(decisive)
        status = (f"{sum(c['holds'] for c in decisive)}/{len(decisive)} claims hold"
                  + (f", {n_rep} reported (not reproduced at our scale)" if n_rep else "")
                  if claims else "not run yet")
        summary.append(f'<tr class="paper" data-paper="{e(name)}"><td><a href="#{e(name)}">'
                       f'{e(name)}</a></td><td>{e(info["summary"])}</td><td>{e(status)}</td></tr>')
        sections.append(f'<section class="paper" id="{e(name)}"><h2>{e(name)}</h2>'
                        f'<p class="citation">{e(info["citation"])}</p>'
                        f'<p><strong>{e(status)}</strong></p>{"".join(parts)}</section>')
    others = [s for s in studies() if s not in paper_of]
    if others:
        parts = [_study_section(s, results_dir, out, None)[0] for s in others]
        sections.append('<section id="other-studies"><h2>Studies without a paper</h2>'
                        + "".join(parts) + "</section>")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ntk-lab claims report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_STYLE}</style></head>
<body>
<h1>ntk-lab claims report</h1>
<p>Runs read from <code>{e(str(results_dir))}</code>; claims re-checked with the thresholds in
the code at {e(stamp)}. Each claim says what was measured, the bound the paper's claim sets, and
whether it holds.</p>
<p id="broken"></p>
<table><thead><tr><th>paper</th><th>summary</th><th>status</th></tr></thead>
<tbody>{''.join(summary)}</tbody></table>
{''.join(sections)}
<script>{_SCRIPT}</script>
</body></html>
"""
    path = out / "index.html"
    path.write_text(page)
    return path
