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
