"""``ntk-lab`` (also ``python -m experiments``): list, run, verify, demo.

    ntk-lab list
    ntk-lab run STUDY [--quick] [--seed N] [--out DIR] [--set key=value ...] [--fresh]
    ntk-lab verify PAPER [--quick] [--json] [--out DIR]
    ntk-lab demo [--out DIR]

Runs compute in float64 (the entry point switches ``jax_enable_x64`` on; importing the
package never does). Errors in the arguments print one line ``ntk-lab: error: ...`` and exit 2.
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
    v.add_argument("--no-progress", action="store_true")

    d = sub.add_parser("demo", help="a quick tour that writes figures")
    d.add_argument("--out", default="results")
    return p


def claims_table(claims: list[dict]) -> str:
    """A Markdown table: claim | expected | measured | holds."""
    def fmt(x):
        if isinstance(x, float):
            return f"{x:.4g}"
        if isinstance(x, list):
            return "[" + ", ".join(fmt(v) for v in x) + "]"
        return str(x)

    def cell(x):  # a literal "|" would split the Markdown cell
        return str(x).replace("|", "\\|")
    lines = ["| id | claim | expected | measured | holds |", "|---|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c['id']} | {cell(c['text'])} | {cell(c['expected'])} | "
                     f"{cell(fmt(c['measured']))} | "
                     f"{'yes' if c['holds'] else 'NO'} |")
    return "\n".join(lines)


def _cmd_list() -> int:
    from experiments.registry import STUDIES
    from papers import PAPERS
    width = max(map(len, [*STUDIES, *PAPERS]))
    print("Studies (ntk-lab run STUDY [--quick]):")
    for name in sorted(STUDIES):
        print(f"  {name:{width}s}  {STUDIES[name][1]}")
    print("Papers (ntk-lab verify PAPER [--quick]):")
    for name in sorted(PAPERS):
        print(f"  {name:{width}s}  {PAPERS[name][1]}")
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
    from papers import load_paper, verify
    load_paper(args.paper)  # fail fast on an unknown name
    report = verify(args.paper, quick=args.quick, out=args.out, progress=not args.no_progress)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['citation']}\n")
        print(claims_table(report["claims"]))
        n_ok = sum(c["holds"] for c in report["claims"])
        print(f"\n{n_ok}/{len(report['claims'])} claims hold"
              f" ({'quick' if args.quick else 'full'} configs; runs in {args.out}/)")
    return 0 if report["all_hold"] else 1


# The tour of ``ntk-lab demo``: one study per room (kernels, lazy vs rich, grokking, limits,
# initialisation), each in its quick configuration.
DEMO_STUDIES = ("ntk_finite_width", "lazy_scale", "grokking_lazy_rich", "modular_grokking",
                "coord_check", "dynamical_isometry")


def _cmd_demo(args) -> int:
    from experiments import baselines, kernel_tour
    from experiments.runner import run_study
    out = Path(args.out) / "demo"
    written = []
    for mod in (kernel_tour, baselines):
        name = mod.__name__.split(".")[-1]
        print(f"[demo] {name} ...", flush=True)
        mod.main(str(out / name), quick=True)
        written.append(str(out / name))
    for study in DEMO_STUDIES:
        print(f"[demo] {study} ...", flush=True)
        res = run_study(study, quick=True, out=out)
        folder = out / study / res["run_id"]
        n_ok = sum(c["holds"] for c in res["claims"])
        print(f"[demo] {study}: {n_ok}/{len(res['claims'])} claims hold; figures: "
              + ", ".join(str(folder / f) for f in res["figures"]))
        written.append(str(folder))
    print("\n[demo] wrote:\n  " + "\n  ".join(written))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _cmd_list()
    import jax
    jax.config.update("jax_enable_x64", True)
    try:
        return {"run": _cmd_run, "verify": _cmd_verify, "demo": _cmd_demo}[args.command](args)
    except (ValueError, TypeError, OSError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"ntk-lab: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
