"""Jacot, A., Gabriel, F. & Hongler, C. (2018). Neural Tangent Kernel: Convergence and Generalization in Neural Networks. NeurIPS 2018, arXiv:1806.07572.

Study: :mod:`experiments.ntk_finite_width` (its docstring carries the setup and the math).
Their Fig. 1 network (depth 4, ReLU, NTK parametrisation, beta = 0.1) on the unit circle: the eNTK row Theta(x0, x(gamma)) at widths 64..512 (24 inits) against the ntk.stax limit, and its change over 200 GD steps (lr 1) at widths 128..512; full: widths 125..10000 (their 500 and 10000 included).
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import ntk_finite_width as study
from papers import single_study

CITATION = "Jacot, A., Gabriel, F. & Hongler, C. (2018). Neural Tangent Kernel: Convergence and Generalization in Neural Networks. NeurIPS 2018, arXiv:1806.07572."
STUDY = "ntk_finite_width"

configs, claims = single_study(study)
