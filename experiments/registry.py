"""The study registry: study name -> module, imported lazily (so ``ntk-lab list`` is fast)."""
from __future__ import annotations

import importlib
from types import ModuleType

# name -> (module path, one-line description). Descriptions live here too so that
# ``ntk-lab list`` does not import JAX-heavy modules.
STUDIES: dict[str, tuple[str, str]] = {
    "grokking_lazy_rich": (
        "experiments.grokking_lazy_rich",
        "Kumar et al. 2023: grokking as the lazy-to-rich transition in a committee machine "
        "(alpha sweep, exact test-loss decomposition, initial-NTK baseline)"),
    "linear_grokking": (
        "experiments.linear_grokking",
        "Levi, Beck & Bar-Sinai: exact GD dynamics of a linear teacher-student model; "
        "grokking time vs their formula as lambda = d / N_train varies"),
    "lazy_scale": (
        "experiments.lazy_scale",
        "Chizat, Oyallon & Bach 2019: output scale alpha; weight and kernel change ~ 1/alpha; "
        "large-alpha test error = initial-NTK regression"),
    "diagonal_linear": (
        "experiments.diagonal_linear",
        "Woodworth et al. 2020: diagonal linear nets, init scale moves GD from the min-l1 to "
        "the min-l2 interpolant"),
    "modular_grokking": (
        "experiments.modular_grokking",
        "Kumar et al. 2023 Fig. 2: modular addition without weight decay (quadratic net, MSE, "
        "GD; AdamW variant); the output scale sets the grokking delay"),
    "rank_richness": (
        "experiments.rank_richness",
        "Liu et al. 2024: low-rank initial weights learn richer (weight change, kernel "
        "alignment) unless aligned with the task"),
    "ntk_finite_width": (
        "experiments.ntk_finite_width",
        "Jacot et al. 2018: empirical NTK against its infinite-width limit as width grows, "
        "and its change during training"),
    "linearization": (
        "experiments.linearization",
        "Lee et al. 2019: a wide network against its linearisation during GD as width grows"),
    "dynamical_isometry": (
        "experiments.dynamical_isometry",
        "Pennington et al. 2017: input-output Jacobian spectrum of deep tanh nets at "
        "criticality, orthogonal vs Gaussian weights"),
    "orthogonal_fluctuations": (
        "experiments.orthogonal_fluctuations",
        "Day et al.: orthogonal weights make preactivation fluctuations depth-independent; "
        "Gaussian: excess kurtosis ~ depth/width"),
    "max_lr": (
        "experiments.max_lr",
        "Iyer, Hanin & Rolnick 2023: maximal initial learning rate against depth x width"),
    "fixup": (
        "experiments.fixup",
        "Zhang, Dauphin & Ma 2019: Fixup initialisation trains deep residual nets without "
        "normalisation"),
    "lsuv": (
        "experiments.lsuv",
        "Mishkin & Matas 2016: layer-sequential unit-variance initialisation"),
    "zero_init": (
        "experiments.zero_init",
        "Zhao et al. 2022: ZerO initialisation with only zeros, ones and Hadamard transforms"),
    "idinit": (
        "experiments.idinit",
        "Pan et al.: IDInit, padded-identity initialisation of main and sub-stem layers"),
    "maxout_init": (
        "experiments.maxout_init",
        "Tseran & Montufar 2023: maxout initialisation c = 1/E[max_K^2] keeps activation "
        "length O(1) with depth"),
    "pntk_quality": (
        "experiments.pntk_quality",
        "Mohamadi et al. 2023: pseudo-NTK (sum of logits) against the full eNTK as the "
        "readout width grows"),
    "coord_check": (
        "experiments.coord_check",
        "Yang et al. (Tensor Programs IV/V): coordinate check and learning-rate transfer "
        "across width, SP vs muP"),
}


def study_names() -> list[str]:
    return sorted(STUDIES)


def describe(name: str) -> str:
    return STUDIES[check_study_name(name)][1]


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or name not in STUDIES:
        raise ValueError(
            f"STUDY: unknown study {name!r}; known studies: {', '.join(study_names())}")
    return name


def load_study(name: str) -> ModuleType:
    """Import and return the study module called ``name`` (ValueError if unknown)."""
    module = importlib.import_module(STUDIES[check_study_name(name)][0])
    for attr in ("NAME", "Config", "run", "claims"):
        if not hasattr(module, attr):
            raise TypeError(f"study module {module.__name__} lacks {attr!r}")
    return module
