"""Kumar, T., Bordelon, B., Gershman, S. J. & Pehlevan, C. (2023). Grokking as the transition from lazy to rich training dynamics. ICLR 2024, arXiv:2310.06110.

Study: :mod:`experiments.grokking_lazy_rich` (its docstring carries the setup and the math).
Scaled down: D = 20, P = 110 (their P/D = 5.5), N = 100, eps = 0.25, alpha in {0.25, 1, 4, 16, 64}, 8000 GD steps (full: their Fig. 3 sizes).
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import grokking_lazy_rich as study
from papers import single_study

CITATION = "Kumar, T., Bordelon, B., Gershman, S. J. & Pehlevan, C. (2023). Grokking as the transition from lazy to rich training dynamics. ICLR 2024, arXiv:2310.06110."
STUDY = "grokking_lazy_rich"

configs, claims = single_study(study)
