"""Liu, Y. H., Baratin, A., Cornford, J., Mihalas, S., Shea-Brown, E. & Lajoie, G. (2024). How connectivity structure shapes rich and lazy learning in neural circuits. ICLR 2024, arXiv:2310.08513.

Study: :mod:`experiments.rank_richness` (its docstring carries the setup and the math).
Three-layer tanh net whose hidden matrix starts at rank r (truncated SVD of a Gaussian, same
Frobenius norm), width 32, 8 teacher tasks on a 2-D input subspace, r = 1..32 plus a task-aligned
rank-2 init (full: width 128, r = 1..128, 16 tasks). The claims are the study's checks,
recomputed here from the run's metrics.
"""
from __future__ import annotations

from experiments import rank_richness as study
from papers import single_study

CITATION = ("Liu, Y. H., Baratin, A., Cornford, J., Mihalas, S., Shea-Brown, E. & Lajoie, G. "
            "(2024). How connectivity structure shapes rich and lazy learning in neural "
            "circuits. ICLR 2024, arXiv:2310.08513.")
STUDY = "rank_richness"

configs, claims = single_study(study)
