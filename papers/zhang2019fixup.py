"""Zhang, H., Dauphin, Y. N. & Ma, T. (2019). Fixup initialization: residual learning without normalization. ICLR 2019, arXiv:1901.09321.

Study: :mod:`experiments.fixup` (its docstring carries the setup and the math).
Residual ReLU MLP without normalisation (two-layer branches, width 64) on scikit-learn
digits, L = 4, 16, 64 blocks: He init against Fixup at init, the one-step function change
across depth, and full-batch GD at one learning rate (full: width 128, L = 4 .. 128).
"""
from __future__ import annotations

from experiments import fixup as study
from papers import single_study

CITATION = ("Zhang, H., Dauphin, Y. N. & Ma, T. (2019). Fixup initialization: residual "
            "learning without normalization. ICLR 2019, arXiv:1901.09321.")
STUDY = "fixup"

configs, claims = single_study(study)
