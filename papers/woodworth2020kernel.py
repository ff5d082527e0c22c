"""Woodworth, B., Gunasekar, S., Lee, J. D., Moroshko, E., Savarese, P., Golan, I., Soudry, D. & Srebro, N. (2020). Kernel and rich regimes in overparametrized models. COLT 2020, arXiv:2002.09277.

Study: :mod:`experiments.diagonal_linear` (its docstring carries the setup and the math).
Diagonal linear net beta = w+^2 - w-^2, d = 100, n = 40, 4-sparse teacher, alpha = 0.01..10 (full: d = 300, n = 100).
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import diagonal_linear as study
from papers import single_study

CITATION = "Woodworth, B., Gunasekar, S., Lee, J. D., Moroshko, E., Savarese, P., Golan, I., Soudry, D. & Srebro, N. (2020). Kernel and rich regimes in overparametrized models. COLT 2020, arXiv:2002.09277."
STUDY = "diagonal_linear"

configs, claims = single_study(study)
