"""``ntk-lab`` (also ``python -m ntk_lab``): list, run, verify, plot, report, demo.

    ntk-lab list
    ntk-lab run STUDY [--quick] [--seed N] [--out DIR] [--set key=value ...] [--fresh]
    ntk-lab verify PAPER [--quick] [--json] [--out DIR] [--from-results]
    ntk-lab plot RUN_DIR
    ntk-lab report [--out DIR] [--results DIR]
    ntk-lab demo [--out DIR]

Runs compute in float64 (the entry point switches ``jax_enable_x64`` on; importing the
packages never does) and draw with matplotlib's Agg backend (chosen here, nowhere else).
Errors in the arguments print one line ``ntk-lab: error: ...`` and exit 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ntk-lab", description="Reproducible NTK studies.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list studies and papers")

    r = sub.add_parser("run", help="run one study")
    r.add_argument("study")
    r.add_argument("--quick", action="store_true", help="CI-sized preset (default: full)")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--out", default="results")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable)")
    r.add_argument("--run-id", default=None, help="run folder name (default from the config)")
    r.add_argument("--fresh", action="store_true", help="discard checkpoints, start over")
    r.add_argument("--no-progress", action="store_true")

    v = sub.add_parser("verify", help="run a paper's studies and check its claims")
    v.add_argument("paper")
    v.add_argument("--quick", action="store_true")
    v.add_argument("--json", action="store_true", help="print the claims as JSON")
    v.add_argument("--out", default="results")
    v.add_argument("--from-results", action="store_true",
                   help="re-check the claims on the stored runs in --out (no computation)")
    v.add_argument("--no-progress", action="store_true")

    pl = sub.add_parser("plot", help="redraw a finished run's figures from its results.json")
    pl.add_argument("run_dir")

    rep = sub.add_parser("report", help="write the claims report (static HTML)")
    rep.add_argument("--out", default="results/report", help="folder for index.html")
    rep.add_argument("--results", default="results", help="folder holding the runs")

    d = sub.add_parser("demo", help="a quick tour that writes figures and the report")
    d.add_argument("--out", default="results")
    return p


def claims_table(claims: list[dict]) -> str:
    """A Markdown table: id | claim | expected | measured | holds."""
    from experiments.claims import verdict
    from ntk_lab.report import format_measured

    def cell(x):  # a literal "|" would split the Markdown cell
        return str(x).replace("|", "\\|")
    lines = ["| id | claim | expected | measured | holds |", "|---|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c['id']} | {cell(c['text'])} | {cell(c['expected'])} | "
                     f"{cell(format_measured(c['measured']))} | "
                     f"{verdict(c)} |")
    return "\n".join(lines)


def _cmd_list() -> int:
    from experiments.registry import studies
    from papers import papers
    st, pa = studies(), papers()
    width = max(map(len, [*st, *pa]))
    print("Studies (ntk-lab run STUDY [--quick]):")
    for name, info in st.items():
        print(f"  {name:{width}s}  {info['summary']}")
    print("Papers (ntk-lab verify PAPER [--quick]):")
    for name, info in pa.items():
        print(f"  {name:{width}s}  {info['summary']}  [{', '.join(info['studies'])}]")
    return 0


def _cmd_run(args) -> int:
    from experiments.runner import run_study
    res = run_study(args.study, quick=args.quick, seed=args.seed, overrides=args.overrides,
                    out=args.out, run_id=args.run_id, fresh=args.fresh,
                    progress=not args.no_progress)
    folder = Path(args.out) / args.study / res["run_id"]
    print(claims_table(res["claims"]))
    print(f"\nwrote {folder}/results.json ({len(res['figures'])} figures, "
          f"{res['elapsed_s']:.1f} s)")
    return 0


def _cmd_verify(args) -> int:
    from papers import check_paper_name, verify
    check_paper_name(args.paper)  # fail fast on an unknown name
    report = verify(args.paper, quick=args.quick, out=args.out, progress=not args.no_progress,
                    from_results=args.from_results)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['citation']}\n")
        print(claims_table(report["claims"]))
        decisive = [c for c in report["claims"] if not c.get("reported")]
        n_ok = sum(c["holds"] for c in decisive)
        n_rep = len(report["claims"]) - len(decisive)
        how = "re-checked on stored runs" if args.from_results else "runs"
        print(f"\n{n_ok}/{len(decisive)} claims hold"
              + (f" (+{n_rep} reported, not reproduced at our scale)" if n_rep else "")
              + f" ({'quick' if args.quick else 'full'} configs; {how} in {args.out}/)")
    return 0 if report["all_hold"] else 1


def _cmd_plot(args) -> int:
    from experiments.runner import redraw
    for path in redraw(args.run_dir):
        print(path)
    return 0


def _cmd_report(args) -> int:
    from ntk_lab.report import write_report
    print(write_report(args.out, results=args.results))
    return 0


# The tour of ``ntk-lab demo``: the kernel tour and baselines, then one study per room
# (kernels, lazy vs rich, grokking, limits, initialisation), each in its quick configuration.
DEMO_STUDIES = ("kernel_tour", "baselines", "ntk_finite_width", "lazy_scale",
                "grokking_lazy_rich", "modular_grokking", "coord_check", "dynamical_isometry")


def _cmd_demo(args) -> int:
    from experiments.runner import run_study
    from ntk_lab.report import write_report
    out = Path(args.out) / "demo"
    written = []
    for study in DEMO_STUDIES:
        print(f"[demo] {study} ...", flush=True)
        res = run_study(study, quick=True, out=out)
        folder = out / study / res["run_id"]
        n_ok = sum(c["holds"] for c in res["claims"])
        print(f"[demo] {study}: {n_ok}/{len(res['claims'])} claims hold; figures: "
              + ", ".join(str(folder / f) for f in res["figures"]))
        written.append(str(folder))
    page = write_report(out / "report", results=out)
    print("\n[demo] wrote:\n  " + "\n  ".join(written))
    print(f"[demo] claims report: {page}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _cmd_list()
    import matplotlib
    matplotlib.use("Agg")
    import jax
    jax.config.update("jax_enable_x64", True)
    commands = {"run": _cmd_run, "verify": _cmd_verify, "plot": _cmd_plot,
                "report": _cmd_report, "demo": _cmd_demo}
    try:
        return commands[args.command](args)
    except (ValueError, TypeError, OSError) as err:
        # bad arguments, refused before anything runs; an exception from inside a study is
        # raised as experiments.runner.StudyFailed (a bug) and keeps its traceback
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"ntk-lab: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
