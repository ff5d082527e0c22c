"""Day, H., Kahn, Y. & Roberts, D. A. (2025). Feature learning and generalization in deep networks with orthogonal weights. Machine Learning: Science and Technology, arXiv:2310.07765.

Study: :mod:`experiments.orthogonal_fluctuations` (its docstring carries the setup and the math).
Excess kurtosis of a preactivation over 40,000 initialisations of width-64, depth-16 tanh and
ReLU nets at criticality (full: width 256, depth 64, 200,000), Gaussian against orthogonal
weights, compared with the Roberts-Yaida-Hanin 1/n recursion and the exact ReLU law.
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import orthogonal_fluctuations as study
from papers import single_study

CITATION = ("Day, H., Kahn, Y. & Roberts, D. A. (2025). Feature learning and generalization in "
            "deep networks with orthogonal weights. Machine Learning: Science and Technology, "
            "arXiv:2310.07765.")
STUDY = "orthogonal_fluctuations"

configs, claims = single_study(study)
