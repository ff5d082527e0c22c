"""Chizat, L., Oyallon, E. & Bach, F. (2019). On lazy training in differentiable programming. NeurIPS 2019, arXiv:1812.07956.

Study: :mod:`experiments.lazy_scale` (its docstring carries the setup and the math).
Two-layer tanh net, NTK parametrisation, width 200, 40 points on the sphere in 5 dims, alpha = 1..64 (full: width 1000, 200 points).
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import lazy_scale as study
from papers import single_study

CITATION = "Chizat, L., Oyallon, E. & Bach, F. (2019). On lazy training in differentiable programming. NeurIPS 2019, arXiv:1812.07956."
STUDY = "lazy_scale"

configs, claims = single_study(study)
