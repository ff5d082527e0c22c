"""Kumar, T., Bordelon, B., Gershman, S. J. & Pehlevan, C. (2023). Grokking as the transition from lazy to rich training dynamics. ICLR 2024, arXiv:2310.06110.

Studies: :mod:`experiments.grokking_lazy_rich` (the committee machine; key "main") and
:mod:`experiments.modular_grokking` (modular addition without weight decay, Fig. 2; key "modular").
Scaled down: committee machine D = 20, P = 110, N = 100, eps = 0.25, alpha in {0.25 .. 64}, 8000 GD steps;
modular addition p = 23, N = 100, 90 % train, alpha in {2, 4, 8, 16} at ten times the paper's GD step,
AdamW at p = 23 (full: the paper's sizes, GD at lr 100 / alpha^2 and AdamW at p = 97, N = 500, 30 % train).
The claims are the studies' checks, recomputed here from the runs' metrics.
"""
from __future__ import annotations

from experiments import grokking_lazy_rich as study
from experiments import modular_grokking
from papers import single_study

CITATION = "Kumar, T., Bordelon, B., Gershman, S. J. & Pehlevan, C. (2023). Grokking as the transition from lazy to rich training dynamics. ICLR 2024, arXiv:2310.06110."
STUDY = "grokking_lazy_rich"

_main_configs, _main_claims = single_study(study)
_modular_configs, _modular_claims = single_study(modular_grokking)


def configs(quick: bool = True) -> dict:
    """{"main": committee-machine alpha sweep, "modular": modular-addition grokking}."""
    return {"main": _main_configs(quick)["main"], "modular": _modular_configs(quick)["main"]}


def claims(results: dict) -> list:
    """The committee machine's claims (results["main"]), then modular addition's
    (results["modular"])."""
    return _main_claims(results) + _modular_claims({"main": results["modular"]})
