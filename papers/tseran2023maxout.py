"""Tseran, H. & Montufar, G. (2023). Expected gradients of maxout networks and consequences to parameter initialization. ICML 2023, arXiv:2301.06956.

Study: :mod:`experiments.maxout_init` (its docstring carries the setup and the math).
Rank-5 maxout nets at init: activation length and input-output Jacobian against depth (width
64, depth 30, 16 nets per c, vmapped) for c = 1/M_K against 0.36, 1 and 2; a depth-16 width-16
maxout net trained on 128 digits with SGD + momentum (full: width 256, depth 50, 64 nets;
depth-21 width-32 training on 1000 digits, 3 seeds).
"""
from __future__ import annotations

from experiments import maxout_init as study
from papers import single_study

CITATION = ("Tseran, H. & Montufar, G. (2023). Expected gradients of maxout networks and "
            "consequences to parameter initialization. ICML 2023, arXiv:2301.06956.")
STUDY = "maxout_init"

configs, claims = single_study(study)
