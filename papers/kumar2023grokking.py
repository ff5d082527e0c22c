"""Kumar, T., Bordelon, B., Gershman, S. J. & Pehlevan, C. (2023). Grokking as the transition from lazy to rich training dynamics. ICLR 2024, arXiv:2310.06110.

Study: :mod:`experiments.grokking_lazy_rich` (its docstring carries the setup and the math).
Scaled down: D = 20, P = 110 (their P/D = 5.5), N = 100, eps = 0.25, alpha in {0.25, 1, 4, 16, 64}, 8000 GD steps (full: their Fig. 3 sizes).
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import grokking_lazy_rich as study

CITATION = "Kumar, T., Bordelon, B., Gershman, S. J. & Pehlevan, C. (2023). Grokking as the transition from lazy to rich training dynamics. ICLR 2024, arXiv:2310.06110."
STUDY = "grokking_lazy_rich"


def configs(quick: bool = True) -> dict:
    """The study runs this paper needs: {key: (study name, config)}."""
    return {"main": (STUDY, study.Config.quick() if quick else study.Config.full())}


def claims(results: dict) -> list:
    """The paper's claims checked on results["main"] (a results.json dict)."""
    res = results["main"]
    cfg = study.Config(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in res["config"].items()})
    return study.claims(res["metrics"], cfg)
