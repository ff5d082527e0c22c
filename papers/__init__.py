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
    "liu2024connectivity": ("papers.liu2024connectivity",
                            "Liu et al. 2024: connectivity structure shapes rich and lazy learning"),
    "jacot2018ntk": ("papers.jacot2018ntk",
                     "Jacot, Gabriel & Hongler 2018: neural tangent kernel"),
    "lee2019wide": ("papers.lee2019wide",
                    "Lee et al. 2019: wide networks evolve as linear models"),
    "pennington2017isometry": ("papers.pennington2017isometry",
                               "Pennington, Schoenholz & Ganguli 2017: dynamical isometry"),
    "day2025orthogonal": ("papers.day2025orthogonal",
                          "Day, Kahn & Roberts 2025: orthogonal weights, depth-independent noise"),
    "iyer2023maxlr": ("papers.iyer2023maxlr",
                      "Iyer, Hanin & Rolnick 2023: maximal initial learning rates"),
    "zhang2019fixup": ("papers.zhang2019fixup",
                       "Zhang, Dauphin & Ma 2019: Fixup initialisation"),
    "mishkin2016lsuv": ("papers.mishkin2016lsuv",
                        "Mishkin & Matas 2016: all you need is a good init (LSUV)"),
    "zhao2022zero": ("papers.zhao2022zero",
                     "Zhao, Schaefer & Anandkumar 2022: ZerO initialisation"),
    "pan2025idinit": ("papers.pan2025idinit",
                      "Pan et al.: IDInit, identical initialisation"),
    "tseran2023maxout": ("papers.tseran2023maxout",
                         "Tseran & Montufar 2023: expected gradients of maxout networks"),
    "mohamadi2023pntk": ("papers.mohamadi2023pntk",
                         "Mohamadi, Bae & Sutherland 2023: pseudo-NTK approximation"),
    "yang2021tp5": ("papers.yang2021tp5",
                    "Yang et al. 2021: Tensor Programs V, muP coordinate check and HP transfer"),
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
