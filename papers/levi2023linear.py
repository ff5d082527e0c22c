"""Levi, N., Beck, A. & Bar-Sinai, Y. (2023). Grokking in linear estimators -- a solvable model that groks without understanding. arXiv:2310.16441 (ICLR 2024).

Study: :mod:`experiments.linear_grokking` (its docstring carries the setup and the math).
Exact GD dynamics at d = 200, lambda = d/N in 0.1..0.6, epsilon = 1e-8, 5 draws per lambda (full: d = 1000).
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import linear_grokking as study
from papers import single_study

CITATION = "Levi, N., Beck, A. & Bar-Sinai, Y. (2023). Grokking in linear estimators -- a solvable model that groks without understanding. arXiv:2310.16441 (ICLR 2024)."
STUDY = "linear_grokking"

configs, claims = single_study(study)
