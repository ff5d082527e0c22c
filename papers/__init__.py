"""Papers: what a published paper claims, checked by the studies that reproduce it.

A paper checked by one study needs no file of its own: the study module names it
(``PAPER = "chizat2019lazy"``, ``CITATION = "..."``). A paper that needs several studies is a
module here defining ``CITATION``, ``SUMMARY`` and ``STUDIES`` (study names, in order); its
claims are its studies' claims, each checked on that study's run.

The registry is derived (study modules and the modules here, read with :mod:`ast`), so
listing papers imports nothing heavy. ``ntk-lab verify PAPER`` runs a paper's studies and
checks its claims (:func:`verify`); ``--from-results`` re-checks the claims on stored runs
without computing anything.
"""
from __future__ import annotations

import functools
from pathlib import Path

from experiments import registry

_HERE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def papers() -> dict[str, dict]:
    """``{name: {"citation", "summary", "studies": (study names)}}`` for every paper."""
    found: dict[str, dict] = {}
    for study, info in registry.studies().items():
        if info["paper"]:
            if not info["citation"]:
                raise TypeError(f"study {study!r} names PAPER {info['paper']!r} but no CITATION")
            found[info["paper"]] = {"citation": info["citation"], "summary": info["summary"],
                                    "studies": (study,)}
    for path in sorted(_HERE.glob("*.py")):
        if path.name.startswith("_"):
            continue
        consts = registry.module_constants(path)
        if path.stem in found:
            raise TypeError(f"paper {path.stem!r} is defined by papers/{path.name} and by study "
                            f"{found[path.stem]['studies'][0]!r}")
        studies = tuple(consts.get("STUDIES", ()))
        unknown = [s for s in studies if s not in registry.studies()]
        if not studies or unknown or "CITATION" not in consts:
            raise TypeError(f"papers/{path.name}: needs CITATION and STUDIES naming known "
                            f"studies (unknown: {unknown})")
        found[path.stem] = {"citation": consts["CITATION"],
                            "summary": consts.get("SUMMARY", consts["CITATION"]),
                            "studies": studies}
    return dict(sorted(found.items()))


def paper_names() -> list[str]:
    return list(papers())


def check_paper_name(name: str) -> str:
    if not isinstance(name, str) or name not in papers():
        raise ValueError(f"PAPER: unknown paper {name!r}; known papers: {', '.join(paper_names())}")
    return name


def verify(name: str, *, quick: bool = True, out="results", progress: bool = True,
           from_results: bool = False) -> dict:
    """Run the paper's studies (or, with ``from_results``, read their stored runs) and check
    its claims with the thresholds in the study modules now.

    Returns ``{"paper", "citation", "quick", "runs": {study: run folder}, "claims": [...],
    "all_hold"}``; each claim carries ``study`` and ``run`` (where its measurement came from);
    ``all_hold`` ignores claims marked reported (not reproduced at our scale).
    """
    from experiments.runner import check_claims, make_config, read_results, run_dir_for, run_study

    info = papers()[check_paper_name(name)]
    runs, claims = {}, []
    for study in info["studies"]:
        module, cfg = make_config(study, quick=quick)
        run_dir = run_dir_for(study, cfg, quick=quick, out=out)
        if from_results:
            if not (run_dir / "results.json").exists():
                raise ValueError(
                    f"--from-results: no stored run of {study!r} at {run_dir}; run "
                    f"`ntk-lab verify {name}{' --quick' if quick else ''} --out {out}` first")
            res = read_results(run_dir)
            checked = check_claims(module, res)
        else:
            res = run_study(study, cfg=cfg, quick=quick, out=out, progress=progress)
            checked = res["claims"]
        runs[study] = str(run_dir)
        claims += [{**c, "study": study, "run": str(run_dir)} for c in checked]
    from experiments.claims import all_hold
    return {"paper": name, "citation": info["citation"], "quick": quick, "runs": runs,
            "claims": claims, "all_hold": all_hold(claims)}
