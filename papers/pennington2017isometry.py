"""Pennington, J., Schoenholz, S. S. & Ganguli, S. (2017). Resurrecting the sigmoid in deep learning through dynamical isometry: theory and practice. NeurIPS 2017, arXiv:1711.04735.

Study: :mod:`experiments.dynamical_isometry` (its docstring carries the setup and the math).
Deep tanh nets on the critical line at q* = 1/64, width 128, depths 1..16, 16 networks per
ensemble (full: width 512, depths 1..64, 32 networks); squared singular values of the
input-output Jacobian for orthogonal and Gaussian weights against the free-probability variance.
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import dynamical_isometry as study
from papers import single_study

CITATION = ("Pennington, J., Schoenholz, S. S. & Ganguli, S. (2017). Resurrecting the sigmoid "
            "in deep learning through dynamical isometry: theory and practice. NeurIPS 2017, "
            "arXiv:1711.04735.")
STUDY = "dynamical_isometry"

configs, claims = single_study(study)
