"""Chizat, L., Oyallon, E. & Bach, F. (2019). On lazy training in differentiable programming. NeurIPS 2019, arXiv:1812.07956.

Study: :mod:`experiments.lazy_scale` (its docstring carries the setup and the math).
Two-layer tanh net, NTK parametrisation, width 200, 40 points on the sphere in 5 dims, alpha = 1..64 (full: width 1000, 200 points).
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import lazy_scale as study

CITATION = "Chizat, L., Oyallon, E. & Bach, F. (2019). On lazy training in differentiable programming. NeurIPS 2019, arXiv:1812.07956."
STUDY = "lazy_scale"


def configs(quick: bool = True) -> dict:
    """The study runs this paper needs: {key: (study name, config)}."""
    return {"main": (STUDY, study.Config.quick() if quick else study.Config.full())}


def claims(results: dict) -> list:
    """The paper's claims checked on results["main"] (a results.json dict)."""
    res = results["main"]
    cfg = study.Config(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in res["config"].items()})
    return study.claims(res["metrics"], cfg)
