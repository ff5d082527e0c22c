"""Depth scaling of residual networks: branch multipliers and Tensor Programs VI's classes.

A residual block is ``x^l = x^{l-1} + L^-alpha g_l(x^{l-1})`` (``L`` blocks).  With the
learning rate of the branch weights scaled like ``L^-kappa``, the per-block change of the
effective branch weights is ``L^-gamma`` with

    SGD:  gamma = alpha + kappa      (the gradient of a branch carries its multiplier L^-alpha)
    Adam: gamma = kappa              (normalised updates drop the gradient's size)

Summing ``L`` coherent block updates, each seen through ``L^-alpha``, moves the features by
``L^(1 - alpha - gamma)``.  Yang, Yu, Zhu & Hayou (Tensor Programs VI, 2023): the network is
stable at initialization iff ``alpha >= 1/2`` (``L`` independent branches of size ``L^-alpha``
add up to ``L^(1/2 - alpha)``), and stable and nontrivial in training iff
``alpha + gamma = 1``.  ``alpha = gamma = 1/2`` is Depth-muP (maximal feature diversity; SGD
learning rate constant in depth, Adam learning rate ``eta / sqrt(L)``), ``alpha`` in
``(1/2, 1]`` is the redundant, ODE-like family (CompleteP of Dey et al. 2025 takes ``alpha = 1``).
"""
from __future__ import annotations

import dataclasses

import sympy

from limits.parametrization import _check_optimizer, _exponent

__all__ = [
    "BRANCH_SCALINGS",
    "branch_exponent",
    "branch_multiplier",
    "depth_lr_exponent",
    "depth_update_exponent",
    "DepthRegime",
    "depth_regime",
]

#: Named branch scalings: multiplier ``L^-alpha``.
BRANCH_SCALINGS = {"none": sympy.Integer(0), "sqrt": sympy.Rational(1, 2),
                   "linear": sympy.Integer(1), "depth_mup": sympy.Rational(1, 2)}


def branch_exponent(branch) -> sympy.Rational:
    """``alpha`` of a branch scaling: ``'none'`` (1) -> 0, ``'sqrt'`` / ``'depth_mup'``
    (``1/sqrt(L)``) -> 1/2, ``'linear'`` (``1/L``) -> 1, or a number."""
    if isinstance(branch, str):
        if branch not in BRANCH_SCALINGS:
            raise ValueError(f"branch must be one of {sorted(BRANCH_SCALINGS)} or a number, "
                             f"got {branch!r}")
        return BRANCH_SCALINGS[branch]
    return _exponent(branch, "branch")


def _check_depth(depth, name="depth"):
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"{name} must be an int, got {type(depth).__name__}")
    if depth < 1:
        raise ValueError(f"{name} must be >= 1, got {depth}")
    return depth


def branch_multiplier(depth: int, branch="sqrt", base_depth: int = 1) -> float:
    """``(depth / base_depth)^-alpha``: the multiplier of every residual branch."""
    _check_depth(depth), _check_depth(base_depth, "base_depth")
    return (depth / base_depth) ** -float(branch_exponent(branch))


def depth_lr_exponent(optimizer: str, branch="sqrt"):
    """``kappa`` making ``alpha + gamma = 1`` (stable and nontrivial in depth, TP VI):
    SGD ``1 - 2 alpha`` (0 for depth-muP), Adam ``1 - alpha`` (1/2 for depth-muP)."""
    alpha = branch_exponent(branch)
    return (1 - 2 * alpha) if _check_optimizer(optimizer) == "sgd" else (1 - alpha)


def depth_update_exponent(optimizer: str, branch="sqrt", lr_depth_exponent=0):
    """``gamma``: per-block update of the effective branch weights is ``L^-gamma`` when the
    branch learning rate is ``eta L^-kappa`` (SGD ``alpha + kappa``, Adam ``kappa``)."""
    alpha = branch_exponent(branch)
    kappa = _exponent(lr_depth_exponent, "lr_depth_exponent")
    return alpha + kappa if _check_optimizer(optimizer) == "sgd" else kappa


@dataclasses.dataclass(frozen=True)
class DepthRegime:
    """TP VI's verdict for branch ``L^-alpha`` and updates ``L^-gamma``; the feature change
    after training scales like ``L^feature_change_exponent`` (= ``1 - alpha - gamma``)."""

    name: str
    alpha: object
    gamma: object
    feature_change_exponent: object
    reasons: tuple

    def explain(self):
        return "\n".join([f"alpha = {self.alpha}, gamma = {self.gamma}: {self.name}"]
                         + [f"  - {r}" for r in self.reasons])


def depth_regime(alpha, gamma) -> DepthRegime:
    """Classify a depth parametrization (Tensor Programs VI): ``'unstable'`` (at init:
    ``alpha < 1/2``; in training: ``alpha + gamma < 1``), ``'trivial'``
    (``alpha + gamma > 1``: the blocks stop learning as ``L`` grows), ``'depth_mup'``
    (``alpha = gamma = 1/2``) or ``'redundant'`` (``alpha + gamma = 1``, ``alpha > 1/2``)."""
    alpha, gamma = _exponent(alpha, "alpha"), _exponent(gamma, "gamma")
    total = 1 - alpha - gamma
    half = sympy.Rational(1, 2)
    if alpha < half:
        return DepthRegime("unstable", alpha, gamma, total, (
            f"alpha = {alpha} < 1/2: the sum of L random branches grows like "
            f"L^{half - alpha} at initialization",))
    if total > 0:
        return DepthRegime("unstable", alpha, gamma, total, (
            f"alpha + gamma = {alpha + gamma} < 1: one step moves the features like "
            f"L^{total}",))
    if total < 0:
        return DepthRegime("trivial", alpha, gamma, total, (
            f"alpha + gamma = {alpha + gamma} > 1: the features move like L^{total} -> 0",))
    if alpha == half:
        return DepthRegime("depth_mup", alpha, gamma, total, (
            "alpha + gamma = 1 with alpha = 1/2: Depth-muP, every block's contribution "
            "is Theta(L^-1/2) and random (maximal feature diversity)",))
    return DepthRegime("redundant", alpha, gamma, total, (
        f"alpha + gamma = 1 with alpha = {alpha} > 1/2: stable and nontrivial, but "
        "neighbouring blocks become redundant (ODE-like limit)",))
