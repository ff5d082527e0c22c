"""Yang, G., Hu, E. J., Babuschkin, I., Sidor, S., Liu, X., Farhi, D., Ryder, N., Pachocki, J., Chen, W. & Gao, J. (2021). Tensor Programs V: Tuning large neural networks via zero-shot hyperparameter transfer. arXiv:2203.03466 (NeurIPS 2021).

Study: :mod:`experiments.coord_check` (its docstring carries the setup and the math).
Depth-2 ReLU MLPs trained with Adam under SP and muP: coordinate check at widths 64, 256, 1024
(2 steps, zero readout) and learning-rate sweeps (2^-12..1) at widths 16, 64, 256 on sklearn
digits (full: limits' full coordinate-check and transfer configs).
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import coord_check as study
from papers import single_study

CITATION = ("Yang, G., Hu, E. J., Babuschkin, I., Sidor, S., Liu, X., Farhi, D., Ryder, N., "
            "Pachocki, J., Chen, W. & Gao, J. (2021). Tensor Programs V: Tuning large neural "
            "networks via zero-shot hyperparameter transfer. arXiv:2203.03466 (NeurIPS 2021).")
STUDY = "coord_check"

configs, claims = single_study(study)
