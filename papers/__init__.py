"""One module per reproduced paper: its citation, the studies it needs and its claims.

A paper module defines ``CITATION`` (str), ``configs(quick) -> {key: (study_name, cfg)}`` and
``claims(results) -> list[Claim]`` where ``results[key]`` is that study run's results dict.
``ntk-lab verify PAPER`` runs the configs and prints the claims table (see :func:`verify`).
"""
from __future__ import annotations

import importlib
from types import ModuleType

PAPERS: dict[str, tuple[str, str]] = {
    "kumar2023grokking": ("papers.kumar2023grokking",
                          "Kumar, Bordelon, Gershman & Pehlevan 2023: grokking as lazy -> rich"),
    "levi2023linear": ("papers.levi2023linear",
                       "Levi, Beck & Bar-Sinai 2023: grokking in linear estimators"),
    "chizat2019lazy": ("papers.chizat2019lazy",
                       "Chizat, Oyallon & Bach 2019: on lazy training"),
    "woodworth2020kernel": ("papers.woodworth2020kernel",
                            "Woodworth et al. 2020: kernel and rich regimes"),
}


def single_study(study_module: ModuleType):
    """``(configs, claims)`` of a paper checked by one study: the study's own quick / full
    config, and the study's ``claims(metrics, cfg)`` recomputed from the run's results."""
    name = study_module.__name__.rsplit(".", 1)[-1]

    def configs(quick: bool = True) -> dict:
        """The study runs this paper needs: {key: (study name, config)}."""
        cfg = study_module.Config.quick() if quick else study_module.Config.full()
        return {"main": (name, cfg)}

    def claims(results: dict) -> list:
        """The paper's claims checked on results["main"] (a results.json dict)."""
        res = results["main"]
        cfg = study_module.Config(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in res["config"].items()})
        return study_module.claims(res["metrics"], cfg)

    return configs, claims


def paper_names() -> list[str]:
    return sorted(PAPERS)


def load_paper(name: str) -> ModuleType:
    if not isinstance(name, str) or name not in PAPERS:
        raise ValueError(f"PAPER: unknown paper {name!r}; known papers: {', '.join(paper_names())}")
    return importlib.import_module(PAPERS[name][0])


def verify(name: str, *, quick: bool = True, out="results", progress: bool = True) -> dict:
    """Run the paper's studies and check its claims.

    Returns ``{"paper", "citation", "quick", "runs": {key: run folder}, "claims": [...],
    "all_hold": bool}``.
    """
    from experiments.records import Claim
    from experiments.runner import run_study

    paper = load_paper(name)
    results, runs = {}, {}
    for key, (study, cfg) in paper.configs(quick).items():
        res = run_study(study, cfg=cfg, quick=quick, out=out, progress=progress)
        results[key] = res
        runs[key] = f"{out}/{study}/{res['run_id']}"
    claims = [c.to_dict() if isinstance(c, Claim) else c for c in paper.claims(results)]
    return {"paper": name, "citation": paper.CITATION, "quick": quick, "runs": runs,
            "claims": claims, "all_hold": all(c["holds"] for c in claims)}
