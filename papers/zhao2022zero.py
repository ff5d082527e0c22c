"""Zhao, J., Schaefer, F. & Anandkumar, A. (2022). ZerO initialization: initializing neural networks with only zeros and ones. TMLR 2022, arXiv:2110.12661.

Study: :mod:`experiments.zero_init` (its docstring carries the setup and the math).
ReLU MLP (48 cropped digit pixels -> 8 hidden layers of 64 -> 10) under ZerO, ZerO with a
plain partial identity in the expanding layer, and He init: full-batch GD, accuracy, rank of
the learned weights and of the hidden features (full: 16 hidden layers, 3000 steps).
"""
from __future__ import annotations

from experiments import zero_init as study
from papers import single_study

CITATION = ("Zhao, J., Schaefer, F. & Anandkumar, A. (2022). ZerO initialization: initializing "
            "neural networks with only zeros and ones. TMLR 2022, arXiv:2110.12661.")
STUDY = "zero_init"

configs, claims = single_study(study)
