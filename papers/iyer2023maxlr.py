"""Iyer, G., Hanin, B. & Rolnick, D. (2023). Maximal initial learning rates in deep ReLU networks. ICML 2023, arXiv:2212.07295.

Study: :mod:`experiments.max_lr` (its docstring carries the setup and the math).
He-initialised ReLU MLPs of depth 2..8 and width 32..64 on 16 points, 30 full-batch GD steps,
eta* by bisection for 3 seeds each (full: depth 2..8, width 64..256, 32 points, 50 steps),
against the kernel bound 2N / lambda_max of the initial eNTK.
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import max_lr as study
from papers import single_study

CITATION = ("Iyer, G., Hanin, B. & Rolnick, D. (2023). Maximal initial learning rates in deep "
            "ReLU networks. ICML 2023, arXiv:2212.07295.")
STUDY = "max_lr"

configs, claims = single_study(study)
