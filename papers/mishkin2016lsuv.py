"""Mishkin, D. & Matas, J. (2016). All you need is a good init. ICLR 2016, arXiv:1511.06422.

Study: :mod:`experiments.lsuv` (its docstring carries the setup and the math).
20-layer MLPs (width 64, ReLU and tanh) on scikit-learn digits: layer output variances
after LSUV on held-out digits, LSUV iterations per layer, and full-batch GD against
orthogonal and Gaussian inits at the same learning rate (full: 30 layers of 256).
"""
from __future__ import annotations

from experiments import lsuv as study
from papers import single_study

CITATION = ("Mishkin, D. & Matas, J. (2016). All you need is a good init. ICLR 2016, "
            "arXiv:1511.06422.")
STUDY = "lsuv"

configs, claims = single_study(study)
