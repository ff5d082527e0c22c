"""Lee, J., Xiao, L., Schoenholz, S. S., Bahri, Y., Novak, R., Sohl-Dickstein, J. & Pennington, J. (2019). Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent. NeurIPS 2019, arXiv:1902.06720.

Study: :mod:`experiments.linearization` (its docstring carries the setup and the math).
One-hidden-layer ReLU MLP (NTK parametrisation) and its linearisation trained by the same full-batch GD on 64 digits (parity target), widths 64..1024, 3 inits; full: two hidden layers, widths 128..4096, 256 digits.
The claims are the study's checks, recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import linearization as study
from papers import single_study

CITATION = "Lee, J., Xiao, L., Schoenholz, S. S., Bahri, Y., Novak, R., Sohl-Dickstein, J. & Pennington, J. (2019). Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent. NeurIPS 2019, arXiv:1902.06720."
STUDY = "linearization"

configs, claims = single_study(study)
