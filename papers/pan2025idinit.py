"""Pan, Y., Wang, C., Wu, Z., Wang, Q., Zhang, M. & Xu, Z. (2025). IDInit: A universal and stable initialization method for neural network training. ICLR 2025, arXiv:2503.04626.

Study: :mod:`experiments.idinit` (its docstring carries the setup and the math).
Residual MLP on digits (64 -> 128, 8 blocks, no normalisation): norm preservation at init against
He's 3^l growth, SGD + momentum on 256 digits over a learning-rate grid against He, and the
rank constraint of zero-padded identities (full: width 256, 16 blocks, 1000 digits, 300 steps).
"""
from __future__ import annotations

from experiments import idinit as study
from papers import single_study

CITATION = ("Pan, Y., Wang, C., Wu, Z., Wang, Q., Zhang, M. & Xu, Z. (2025). IDInit: A "
            "universal and stable initialization method for neural network training. "
            "ICLR 2025, arXiv:2503.04626.")
STUDY = "idinit"

configs, claims = single_study(study)
