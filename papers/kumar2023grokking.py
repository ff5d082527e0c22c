"""Kumar, T., Bordelon, B., Gershman, S. J. & Pehlevan, C. (2023). Grokking as the transition from lazy to rich training dynamics. ICLR 2024, arXiv:2310.06110.

Checked by two studies: :mod:`experiments.grokking_lazy_rich` (the committee machine) and
:mod:`experiments.modular_grokking` (modular addition without weight decay, Fig. 2).
Scaled down: committee machine D = 20, P = 110, N = 100, eps = 0.25, alpha in {0.25 .. 64}, 8000
GD steps; modular addition p = 23, N = 100, 90 % train, alpha in {2, 4, 8, 16} at twenty times
the paper's GD step, AdamW at p = 23 and twice its rate (full: the paper's sizes, GD at lr 100 / alpha^2 and AdamW at
p = 97, N = 500, 30 % train).
"""
CITATION = "Kumar, T., Bordelon, B., Gershman, S. J. & Pehlevan, C. (2023). Grokking as the transition from lazy to rich training dynamics. ICLR 2024, arXiv:2310.06110."
SUMMARY = "Kumar, Bordelon, Gershman & Pehlevan 2023: grokking as the lazy-to-rich transition"
STUDIES = ("grokking_lazy_rich", "modular_grokking")
