"""Mohamadi, M. A., Bae, W. & Sutherland, D. J. (2023). A fast, well-founded approximation to the empirical neural tangent kernel. ICML 2023, PMLR 202:25061-25081, arXiv:2206.12543.

Study: :mod:`experiments.pntk_quality` (its docstring carries the setup and the math).
One-hidden-layer ReLU MLP (NTK parametrisation, 10 outputs) on 48 + 100 sklearn digits, readout
widths 64, 512, 4096, two seeds (full: two hidden layers, 200 + 1000 digits, widths 64..8192,
five seeds).
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import pntk_quality as study
from papers import single_study

CITATION = ("Mohamadi, M. A., Bae, W. & Sutherland, D. J. (2023). A fast, well-founded "
            "approximation to the empirical neural tangent kernel. ICML 2023, "
            "PMLR 202:25061-25081, arXiv:2206.12543.")
STUDY = "pntk_quality"

configs, claims = single_study(study)
